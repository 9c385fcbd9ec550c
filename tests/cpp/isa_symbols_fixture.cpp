// An object that check_isa_symbols.sh must refuse, read as if it were a scalar kernel object:
// taking a template's address makes every optimization level emit it as a weak symbol, once
// inside the ISA namespace (allowed) and once from std (the case the check exists for).
#include <algorithm>

namespace sparsetrain {
namespace kernels {
namespace scalar {

template <class T>
T twice(T x) {
  return x + x;
}

float (*own_template())(float) { return &twice<float>; }
const float& (*std_template())(const float&, const float&) { return &std::max<float>; }

}  // namespace scalar
}  // namespace kernels
}  // namespace sparsetrain
