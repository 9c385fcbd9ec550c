// Run-time ISA selection (dispatch/isa.h): what the ISA loop of every kernel test relies on.
#include "tester.h"

#include <stdexcept>

namespace st_test {
namespace {

TEST(Dispatch, ScalarIsAlwaysSupportedAndFirst) {
  const std::vector<st::Isa> isas = st::supported_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), st::Isa::scalar);
  for (size_t i = 1; i < isas.size(); ++i) EXPECT_LT(isas[i - 1], isas[i]) << "best last";
}

TEST(Dispatch, EachTableIsItsOwnIsa) {
  for (st::Isa isa : st::supported_isas()) {
    EXPECT_TRUE(st::isa_supported(isa));
    EXPECT_EQ(st::kernel_table(isa).isa, isa) << st::isa_name(isa);
  }
}

TEST(Dispatch, NamesRoundTripAndUnknownNamesThrow) {
  for (st::Isa isa : {st::Isa::scalar, st::Isa::avx2, st::Isa::avx512})
    EXPECT_EQ(st::isa_from_name(st::isa_name(isa)), isa);
  EXPECT_THROW(st::isa_from_name("sse9"), std::invalid_argument);
}

TEST(Dispatch, SetIsaSelectsTheTableAndRefusesUnsupported) {
  const st::Isa before = st::current_isa();
  for (st::Isa isa : st::supported_isas()) {
    st::set_isa(isa);
    EXPECT_EQ(st::current_isa(), isa);
    EXPECT_EQ(&st::kernel_table(), &st::kernel_table(isa));
  }
  for (st::Isa isa : {st::Isa::avx2, st::Isa::avx512})
    if (!st::isa_supported(isa)) {
      EXPECT_THROW(st::set_isa(isa), std::invalid_argument);
      EXPECT_THROW(st::kernel_table(isa), std::invalid_argument);
    }
  st::set_isa(before);
}

}  // namespace
}  // namespace st_test
