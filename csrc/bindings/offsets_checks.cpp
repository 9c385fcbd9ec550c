#include "bindings/offsets_checks.h"

namespace sparsetrain {
namespace bindings {

namespace k = sparsetrain::kernels;

namespace {

OffsetsExtent check_offsets_index(const View<int64_t>& ptr, const View<int64_t>& off) {
  const int64_t rows = ptr.size() - 1;
  if (rows < 0) bad("row pointer is empty");
  if (ptr.data[0] != 0) bad("row pointer must start at 0");
  for (int64_t r = 0; r < rows; ++r)
    if (ptr.data[r + 1] < ptr.data[r]) bad("row pointer decreases at row " + std::to_string(r));
  if (ptr.data[rows] != off.size()) bad("row pointer does not end at the number of offsets");
  OffsetsExtent e;
  if (off.size() > 0) e.min_off = e.max_off = off.data[0];
  for (int64_t j = 0; j < off.size(); ++j) {
    e.min_off = off.data[j] < e.min_off ? off.data[j] : e.min_off;
    e.max_off = off.data[j] > e.max_off ? off.data[j] : e.max_off;
  }
  if (e.min_off < 0) bad("negative offset");
  return e;
}

// A layout handed to an offsets call describes its images one at a time.
template <class L>
void check_per_image(const L& l, int64_t images, const char* form) {
  if (l.unit != 1 || l.n != images)
    bad(std::string(form) + ": the layout must have unit 1 and n = images");
}

}  // namespace

OffsetsIndex offsets_index(const py::array& ptr_a, const py::array& off_a, int64_t len,
                           int64_t images) {
  OffsetsIndex ix{view<int64_t>(ptr_a, "ptr", 1), view<int64_t>(off_a, "offsets", 1), {}, 0, 0};
  ix.extent = check_offsets_index(ix.ptr, ix.off);
  ix.rows = ix.ptr.size() - 1;
  ix.nnz = ix.off.size();
  if (len < 0 || images < 0) bad("negative length or image count");
  return ix;
}

void check_extent(const char* name, int64_t size, int64_t images, int64_t image_stride,
                  int64_t last_start, int64_t len) {
  if (images <= 0 || len <= 0) return;
  if (image_stride < 0 || last_start < 0) bad(std::string(name) + ": negative image stride");
  if (sum(mul(images - 1, image_stride), last_start, len) > size)
    bad(std::string(name) + ": buffer too small for the offsets, strides and length given");
}

void check_disjoint(const char* name, int64_t images, int64_t image_stride, int64_t footprint) {
  if (images > 1 && image_stride < footprint)
    bad(std::string(name) + ": images overlap (image stride smaller than one image)");
}

void check_row_block(const char* name, int64_t size, int64_t images, int64_t image_stride,
                     int64_t rows, int64_t ld, int64_t len) {
  if (rows <= 0) return;
  if (ld < len) bad(std::string("ld") + name + " is smaller than len");
  check_extent(name, size, images, image_stride, mul(rows - 1, ld), len);
  check_disjoint(name, images, image_stride, sum(mul(rows - 1, ld), len));
}

void check_segments(int64_t seg_len, int64_t seg_stride) {
  if (seg_len < 0 || seg_stride < 0) bad("negative segment length or stride");
  if (seg_len > 0 && seg_len > seg_stride) bad("segment longer than its stride");
}

void check_within_packed(const OffsetsExtent& e, int64_t nnz, int64_t len, int64_t image,
                         const char* form) {
  if (nnz > 0 && len > 0 && sum(e.max_off, len) > image)
    bad(std::string(form) + ": offsets and length reach past a packed image");
}

void check_merge(const k::ConvInputLayout& l, int64_t rows, int64_t images, int64_t t_base,
                 int64_t len, int64_t c_size, int64_t c_image_stride) {
  check_per_image(l, images, "merge");
  if (mul(l.c, l.sh, l.sw) != rows) bad("merge: rows must be channels x stride phases");
  if (t_base < 0 || sum(t_base, len) > mul(l.hq, l.wq))
    bad("merge: positions past the end of a phase plane");
  check_extent("c", c_size, images, c_image_stride, 0, mul(l.c, l.h, l.w));
  check_disjoint("c", images, c_image_stride, mul(l.c, l.h, l.w));
}

void check_pack(const k::ConvInputLayout& l, int64_t images, int64_t b_size, int64_t b_image_stride,
                const OffsetsExtent& e, int64_t nnz, int64_t len) {
  check_per_image(l, images, "pack");
  if (b_image_stride != mul(l.c, l.h, l.w))
    bad("pack: b_image_stride must be one NCHW image of b (c * h * w)");
  check_extent("b", b_size, images, b_image_stride, 0, b_image_stride);
  check_within_packed(e, nnz, len, mul(mul(l.c, l.sh, l.sw), l.hq, l.wq), "pack");
}

void check_pack_grid(const k::ConvOutputLayout& l, int64_t images, int64_t size,
                     int64_t image_stride, const std::string& name) {
  check_per_image(l, images, "pack_grid");
  if (image_stride != mul(l.c, l.ho, l.wo))
    bad("pack_grid: the image stride of " + name + " must be one NCHW image (c * ho * wo)");
  check_extent(name.c_str(), size, images, image_stride, 0, image_stride);
}

}  // namespace bindings
}  // namespace sparsetrain
