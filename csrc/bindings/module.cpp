// pybind11 bindings: NumPy buffers in, buffers out (PyTorch tensors cross as zero-copy
// NumPy views). Shapes, dtypes and contiguity are checked here, in O(1), so that a kernel
// never sees a buffer smaller than it will touch; index *contents* are validated once per
// pattern by validate_csr (sparsetrain/formats.py keeps that invariant). Kernels run with
// the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "dispatch/isa.h"
#include "formats/csr.h"
#include "kernels/conv_grads_form.h"
#include "kernels/kernels.h"
#include "memory/hugepages.h"
#include "memory/malloc_reuse.h"

namespace py = pybind11;
namespace k = sparsetrain::kernels;
using sparsetrain::Isa;

#ifndef SPARSETRAIN_VERSION
#define SPARSETRAIN_VERSION "0.0.0"
#endif

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

// Size arithmetic of the checks below, in 64 bits with overflow detected: a product or sum of
// sizes that does not fit int64 describes no buffer that can exist, so it is rejected (a
// wrapped result could pass a bounds check and send a kernel far outside its buffers).
int64_t mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) bad("sizes overflow 64-bit arithmetic");
  return r;
}
int64_t mul(int64_t a, int64_t b, int64_t c) { return mul(mul(a, b), c); }
int64_t mul(int64_t a, int64_t b, int64_t c, int64_t d) { return mul(mul(a, b, c), d); }
int64_t sum(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) bad("sizes overflow 64-bit arithmetic");
  return r;
}
int64_t sum(int64_t a, int64_t b, int64_t c) { return sum(sum(a, b), c); }

// A checked view of a C-contiguous NumPy array of exactly dtype T and rank ndim.
template <class T>
struct View {
  T* data;
  int64_t rows, cols;  // cols == 1 for rank 1
  int64_t size() const { return rows * cols; }
};

template <class T>
View<T> view(const py::array& a, const char* name, int ndim, bool writable = false) {
  // Equivalence, not identity, of dtypes: an unpickled array's int64 is an equal but distinct
  // dtype object (identity gave "expected dtype int64, got int64").
  if (!py::isinstance<py::array_t<T>>(a))
    bad(std::string(name) + ": expected dtype " + py::str(py::dtype::of<T>()).cast<std::string>() +
        ", got " + py::str(a.dtype()).cast<std::string>());
  if (a.ndim() != ndim)
    bad(std::string(name) + ": expected rank " + std::to_string(ndim) + ", got " +
        std::to_string(a.ndim()));
  if (!(a.flags() & py::array::c_style)) bad(std::string(name) + ": must be C-contiguous");
  if (writable && !a.writeable()) bad(std::string(name) + ": must be writable");
  View<T> v{static_cast<T*>(const_cast<void*>(a.data())), a.shape(0), ndim == 2 ? a.shape(1) : 1};
  return v;
}

void check_batch_major(int64_t nb, const char* name) {
  if (nb % k::kBatchAlign != 0)
    bad(std::string(name) + ": padded batch " + std::to_string(nb) + " is not a multiple of " +
        std::to_string(k::kBatchAlign));
}

// ptr (rows + 1) must be non-decreasing from ptr[0] >= 0 for any kernel to be in bounds;
// checked fully at validate_csr, here only its ends against the buffers handed in.
int64_t check_csr_ends(const View<int64_t>& ptr, int64_t rows, int64_t idx_len, int64_t val_len) {
  if (ptr.size() != sum(rows, 1))
    bad("row pointer has length " + std::to_string(ptr.size()) + ", expected " +
        std::to_string(rows + 1));
  const int64_t nnz = ptr.data[rows];
  if (ptr.data[0] < 0 || nnz < ptr.data[0] || idx_len < nnz || val_len < nnz)
    bad("index/value buffers are shorter than the row pointer says");
  return nnz;
}

// The optional (pos, scratch) pair of the transposed products: pos must index [0, nnz).
// Whether two buffers share any element.
template <class T, class U>
bool overlap(const View<T>& p, const View<U>& q) {
  const auto a = reinterpret_cast<std::uintptr_t>(p.data);
  const auto b = reinterpret_cast<std::uintptr_t>(q.data);
  return a < b + q.size() * sizeof(U) && b < a + p.size() * sizeof(T);
}

struct Scatter {
  const int64_t* pos = nullptr;
  float* scratch = nullptr;
};

Scatter scatter_args(const py::object& pos_o, const py::object& scratch_o, int64_t nnz) {
  Scatter out;
  if (pos_o.is_none()) return out;
  if (scratch_o.is_none()) bad("a transposed product needs a scratch buffer with pos");
  auto pv = view<int64_t>(pos_o.cast<py::array>(), "pos", 1);
  auto sv = view<float>(scratch_o.cast<py::array>(), "scratch", 1, true);
  if (pv.size() != nnz || sv.size() < nnz) bad("pos / scratch lengths differ from nnz");
  for (int64_t j = 0; j < nnz; ++j)
    if (pv.data[j] < 0 || pv.data[j] >= nnz) bad("pos entry out of range");
  out.pos = pv.data;
  out.scratch = sv.data;
  return out;
}

void spmm(py::array ptr_a, py::array idx_a, py::array val_a, py::object pos_o,
          py::object scratch_o, py::array b_a, py::array c_a, int nthreads) {
  auto ptr = view<int64_t>(ptr_a, "ptr", 1);
  auto idx = view<int32_t>(idx_a, "idx", 1);
  auto val = view<float>(val_a, "values", 1);
  auto b = view<float>(b_a, "b", 2);
  auto c = view<float>(c_a, "c", 2, true);
  const int64_t nnz = check_csr_ends(ptr, c.rows, idx.size(), val.size());
  if (!pos_o.is_none() && (ptr.data[0] != 0 || val.size() != nnz))
    bad("spmm with pos needs a pointer from 0 and exactly nnz values");
  const Scatter sc = scatter_args(pos_o, scratch_o, nnz);
  if (b.cols != c.cols) bad("b and c have different padded batch sizes");
  check_batch_major(c.cols, "c");
  k::SpmmArgs args{ptr.data, idx.data, val.data, sc.pos, sc.scratch, c.rows, b.rows, b.data, b.cols, c.data,
                   c.cols, c.cols, nthreads};
  py::gil_scoped_release release;
  sparsetrain::kernel_table().spmm(args);
}

void spmmt(py::array ptr_a, py::array idx_a, py::array val_a, py::array col_ptr_a, py::array b_a,
           py::array c_a, int nthreads) {
  auto ptr = view<int64_t>(ptr_a, "ptr", 1);
  auto idx = view<int32_t>(idx_a, "idx", 1);
  auto val = view<float>(val_a, "values", 1);
  auto col_ptr = view<int64_t>(col_ptr_a, "col_ptr", 1);
  auto b = view<float>(b_a, "b", 2);
  auto c = view<float>(c_a, "c", 2, true);
  const int64_t nnz = check_csr_ends(ptr, b.rows, idx.size(), val.size());
  if (col_ptr.size() != sum(c.rows, 1) || col_ptr.data[0] != 0 || col_ptr.data[c.rows] != nnz)
    bad("col_ptr must have one entry per row of c plus one, from 0 to nnz");
  if (b.cols != c.cols) bad("b and c have different padded batch sizes");
  check_batch_major(c.cols, "c");
  k::SpmmTArgs args{ptr.data, idx.data, val.data, col_ptr.data, b.rows, c.rows, b.data, b.cols,
                    c.data, c.cols, c.cols, nthreads};
  py::gil_scoped_release release;
  sparsetrain::kernel_table().spmmt(args);
}

void sddmm(py::array ptr_a, py::array idx_a, py::array a_a, py::array b_a, py::array out_a,
           int nthreads) {
  auto ptr = view<int64_t>(ptr_a, "ptr", 1);
  auto idx = view<int32_t>(idx_a, "idx", 1);
  auto a = view<float>(a_a, "a", 2);
  auto b = view<float>(b_a, "b", 2);
  auto out = view<float>(out_a, "out", 1, true);
  check_csr_ends(ptr, a.rows, idx.size(), out.size());
  if (b.cols != a.cols) bad("a and b have different padded batch sizes");
  check_batch_major(a.cols, "a");
  k::SddmmArgs args{ptr.data, idx.data, a.rows, b.rows, a.data, a.cols, b.data, b.cols, a.cols,
                    out.data, nthreads};
  py::gil_scoped_release release;
  sparsetrain::kernel_table().sddmm(args);
}

void pack(py::array src_a, py::array dst_a, int nthreads) {
  auto src = view<float>(src_a, "src", 2);
  auto dst = view<float>(dst_a, "dst", 2, true);
  if (dst.rows != src.cols) bad("dst must have one row per feature of src");
  if (dst.cols < src.rows) bad("dst is narrower than the batch");
  check_batch_major(dst.cols, "dst");
  k::PackArgs args{src.data, src.rows, src.cols, src.cols, dst.data, dst.cols, nthreads};
  py::gil_scoped_release release;
  sparsetrain::kernel_table().pack(args);
}

void unpack(py::array src_a, py::array dst_a, py::object bias_o, int nthreads) {
  auto src = view<float>(src_a, "src", 2);
  auto dst = view<float>(dst_a, "dst", 2, true);
  if (src.rows != dst.cols) bad("src must have one row per feature of dst");
  if (src.cols < dst.rows) bad("src is narrower than the batch");
  const float* bias = nullptr;
  if (!bias_o.is_none()) {
    auto bv = view<float>(bias_o.cast<py::array>(), "bias", 1);
    if (bv.size() != dst.cols) bad("bias length differs from the feature count");
    bias = bv.data;
  }
  k::UnpackArgs args{src.data, src.cols, dst.rows, dst.cols, dst.data, dst.cols, bias, nthreads};
  py::gil_scoped_release release;
  sparsetrain::kernel_table().unpack(args);
}

// The offsets kernels read B_n[off[j] + t] and write C_n[r * ldc + t]: check that every
// such element is inside the buffers handed in (O(rows + nnz), small next to the products).
struct OffsetsExtent {
  int64_t min_off = 0, max_off = -1;
};

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

void check_extent(const char* name, int64_t size, int64_t images, int64_t image_stride,
                  int64_t last_start, int64_t len) {
  if (images <= 0 || len <= 0) return;
  if (image_stride < 0 || last_start < 0) bad(std::string(name) + ": negative image stride");
  if (sum(mul(images - 1, image_stride), last_start, len) > size)
    bad(std::string(name) + ": buffer too small for the offsets, strides and length given");
}

// The index every offsets kernel takes, checked, with the sizes the calls share.
struct OffsetsIndex {
  View<int64_t> ptr, off;
  OffsetsExtent extent;
  int64_t rows, nnz;
};

OffsetsIndex offsets_index(const py::array& ptr_a, const py::array& off_a, int64_t len,
                           int64_t images) {
  OffsetsIndex ix{view<int64_t>(ptr_a, "ptr", 1), view<int64_t>(off_a, "offsets", 1), {}, 0, 0};
  ix.extent = check_offsets_index(ix.ptr, ix.off);
  ix.rows = ix.ptr.size() - 1;
  ix.nnz = ix.off.size();
  if (len < 0 || images < 0) bad("negative length or image count");
  return ix;
}

// Images of an output (or of the output gradient) must not overlap: overlapping outputs
// would be written by several threads at once, and they bound the image count by the buffer.
void check_disjoint(const char* name, int64_t images, int64_t image_stride, int64_t footprint) {
  if (images > 1 && image_stride < footprint)
    bad(std::string(name) + ": images overlap (image stride smaller than one image)");
}

// `rows` rows of `len` floats, `ld` apart, in images `image_stride` apart: inside the buffer,
// and images disjoint.
void check_row_block(const char* name, int64_t size, int64_t images, int64_t image_stride,
                     int64_t rows, int64_t ld, int64_t len) {
  if (rows <= 0) return;
  if (ld < len) bad(std::string("ld") + name + " is smaller than len");
  check_extent(name, size, images, image_stride, mul(rows - 1, ld), len);
  check_disjoint(name, images, image_stride, sum(mul(rows - 1, ld), len));
}

// Segments (seg_len of every seg_stride positions) only ever narrow the range [0, len) the
// bounds checks cover.
void check_segments(int64_t seg_len, int64_t seg_stride) {
  if (seg_len < 0 || seg_stride < 0) bad("negative segment length or stride");
  if (seg_len > 0 && seg_len > seg_stride) bad("segment longer than its stride");
}

k::ConvInputLayout conv_input_layout(int64_t n, int64_t c, int64_t unit, int64_t h, int64_t w,
                                     int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t hq,
                                     int64_t wq) {
  if (unit != 1 && unit != 16) bad("unit must be 1 or 16");
  if (n < 0 || c < 0 || h < 0 || w < 0 || sh < 1 || sw < 1 || pt < 0 || pl < 0)
    bad("bad convolution input layout");
  if (hq < 0 || wq < 0 || mul(hq, sh) < sum(h, pt) || mul(wq, sw) < sum(w, pl))
    bad("phase planes smaller than the padded input");
  return {n, c, (n + unit - 1) / unit, unit, h, w, sh, sw, pt, pl, hq, wq};
}

// The output side: channel pixels on a grid of wq columns from `offset` on, per_channel apart.
k::ConvOutputLayout conv_output_layout(int64_t n, int64_t c, int64_t unit, int64_t ho, int64_t wo,
                                       int64_t wq, int64_t per_channel, int64_t offset) {
  if (unit != 1 && unit != 16) bad("unit must be 1 or 16");
  if (n < 0 || c < 0 || ho < 0 || wo < 0 || wo > wq || offset < 0 || per_channel < 0)
    bad("bad convolution output layout");
  if (ho > 0 && wo > 0 && sum(offset, mul(ho - 1, wq), wo) > per_channel)
    bad("per_channel too small for the output pixels");
  return {n, c, (n + unit - 1) / unit, unit, ho, wo, wq, per_channel, offset};
}

// The fused forms' offsets: every run [off, off + len) inside one packed image.
void check_within_packed(const OffsetsExtent& e, int64_t nnz, int64_t len, int64_t image,
                         const char* form) {
  if (nnz > 0 && len > 0 && sum(e.max_off, len) > image)
    bad(std::string(form) + ": offsets and length reach past a packed image");
}

// True when every per-image (or per-channel) flag a kernel set is 1.
py::bool_ all_set(const std::vector<unsigned char>& flags) {
  for (unsigned char f : flags)
    if (!f) return py::bool_(false);
  return py::bool_(true);
}

// spmm_offsets' merge form: (h, w, sh, sw, pt, pl, hq, wq) of the strided input whose phase
// planes the rows are; the result goes straight into `images` NCHW tensors of
// rows / (sh * sw) channels, c_image_stride apart.
k::ConvInputLayout merge_layout(py::object merge_o, int64_t rows, int64_t images, int64_t t_base,
                                int64_t len, int64_t c_size, int64_t c_image_stride) {
  const auto m = merge_o.cast<std::vector<int64_t>>();
  if (m.size() != 8) bad("merge takes (h, w, sh, sw, pt, pl, hq, wq)");
  const int64_t h = m[0], w = m[1], sh = m[2], sw = m[3];
  if (sh < 1 || sw < 1) bad("bad convolution input layout");
  if (rows % mul(sh, sw)) bad("merge: rows must be channels x stride phases");
  const auto l = conv_input_layout(images, rows / (sh * sw), 1, h, w, sh, sw, m[4], m[5], m[6],
                                   m[7]);
  if (t_base < 0 || sum(t_base, len) > mul(l.hq, l.wq))
    bad("merge: positions past the end of a phase plane");
  check_extent("c", c_size, images, c_image_stride, 0, mul(l.c, h, w));
  check_disjoint("c", images, c_image_stride, mul(l.c, h, w));
  return l;
}

// The offsets kernels' fused-pack form: b is the NCHW input (images x c x h x w, image stride
// b_image_stride = c * h * w), packed image by image into phase planes per
// pack = (c, h, w, sh, sw, pt, pl, hq, wq); the offsets index a packed image.
k::ConvInputLayout pack_layout(py::object pack_o, int64_t images, int64_t b_size,
                               int64_t b_image_stride, const OffsetsExtent& e, int64_t nnz,
                               int64_t len) {
  const auto m = pack_o.cast<std::vector<int64_t>>();
  if (m.size() != 9) bad("pack takes (c, h, w, sh, sw, pt, pl, hq, wq)");
  const auto l = conv_input_layout(images, m[0], 1, m[1], m[2], m[3], m[4], m[5], m[6], m[7],
                                   m[8]);
  if (b_image_stride != mul(l.c, l.h, l.w))
    bad("pack: b_image_stride must be one NCHW image of b (c * h * w)");
  check_extent("b", b_size, images, b_image_stride, 0, b_image_stride);
  check_within_packed(e, nnz, len, mul(mul(l.c, l.sh, l.sw), l.hq, l.wq), "pack");
  return l;
}

// The same for an output gradient: the NCHW tensor (images x c x ho x wo, image stride
// c * ho * wo) goes onto the bordered grid of pack_grid = (c, ho, wo, wq, per_channel, offset)
// image by image.
k::ConvOutputLayout grid_layout(py::object grid_o, int64_t images, int64_t size,
                                int64_t image_stride, const std::string& name) {
  const auto m = grid_o.cast<std::vector<int64_t>>();
  if (m.size() != 6) bad("pack_grid takes (c, ho, wo, wq, per_channel, offset)");
  const auto l = conv_output_layout(images, m[0], 1, m[1], m[2], m[3], m[4], m[5]);
  if (image_stride != mul(l.c, l.ho, l.wo))
    bad("pack_grid: the image stride of " + name + " must be one NCHW image (c * ho * wo)");
  check_extent(name.c_str(), size, images, image_stride, 0, image_stride);
  return l;
}

// The checked arguments of one spmm_offsets call, with the layouts and flags they point to.
// Filled in place (args points into the struct), so it is never copied or moved.
struct SpmmOffsetsCall {
  k::SpmmOffsetsArgs args{};
  k::ConvInputLayout pack{}, merge{};
  k::ConvOutputLayout grid{};
  std::vector<unsigned char> finite;
  bool check_finite = false;
  bool empty = false;  // len or images 0: no kernel to run (its sums zeroed here)
  SpmmOffsetsCall() = default;
  SpmmOffsetsCall(const SpmmOffsetsCall&) = delete;
  SpmmOffsetsCall& operator=(const SpmmOffsetsCall&) = delete;
  // check_finite: whether every image of b the kernel packed was finite; else None.
  py::object result() const { return check_finite ? py::object(all_set(finite)) : py::none(); }
};

void prepare_spmm_offsets(SpmmOffsetsCall& call, py::array ptr_a, py::array off_a,
                          py::array val_a, py::object pos_o, py::object scratch_o, py::array b_a,
                          int64_t b_image_stride, py::array c_a, int64_t ldc,
                          int64_t c_image_stride, int64_t len, int64_t images, int nthreads,
                          int64_t grid_w, int64_t t_base, int64_t row0, int64_t col0,
                          int64_t plane_h, int64_t plane_w, py::object bias_o, int64_t seg_len,
                          int64_t seg_stride, int64_t unit, int64_t batch, py::object merge_o,
                          py::object pack_o, bool check_finite, py::object pack_grid_o,
                          py::object stats_o) {
  const auto ix = offsets_index(ptr_a, off_a, len, images);
  check_segments(seg_len, seg_stride);
  if (unit != 1 && unit != 16) bad("unit must be 1 or 16");
  const bool merging = !merge_o.is_none();
  if (merging && !stats_o.is_none())
    bad("stats: not with merge (an input gradient has no batch norm)");
  if (merging && (unit != 1 || grid_w > 0))
    bad("merge writes NCHW planes itself: unit 1 and no grid_w");
  const bool packing = !pack_o.is_none(), gridding = !pack_grid_o.is_none();
  if ((packing || gridding) && unit != 1) bad("pack: unit must be 1");
  if (packing && gridding) bad("pack and pack_grid: one of them at most");
  if (check_finite && !packing && !gridding)
    bad("check_finite needs pack or pack_grid (the kernel reads b itself)");
  if (unit == 16) {  // planes of a batch-innermost B: whole grid points of 16 floats
    if (grid_w <= 0) bad("unit 16 writes planes: grid_w must be set");
    if (len % 16 || seg_len % 16 || seg_stride % 16)
      bad("unit 16: len and segments must be whole grid points (multiples of 16)");
    if (batch <= mul(16, images - 1) || batch > mul(16, images))
      bad("unit 16: batch must fill the last group of 16 images");
  }
  const int64_t rows = ix.rows, nnz = ix.nnz;
  auto val = view<float>(val_a, "values", 1);
  auto b = view<float>(b_a, "b", 1);
  auto c = view<float>(c_a, "c", 1, true);
  if (val.size() != nnz) bad("values and offsets differ in length");
  const Scatter sc = scatter_args(pos_o, scratch_o, nnz);
  k::ConvInputLayout& pack = call.pack;
  k::ConvOutputLayout& grid = call.grid;
  if (packing) {
    pack = pack_layout(pack_o, images, b.size(), b_image_stride, ix.extent, nnz, len);
  } else if (gridding) {
    grid = grid_layout(pack_grid_o, images, b.size(), b_image_stride, "b");
    check_within_packed(ix.extent, nnz, len, mul(grid.c, grid.per_channel), "pack_grid");
  } else if (nnz > 0) {
    check_extent("b", b.size(), images, b_image_stride, ix.extent.max_off, len);
  }
  const float* bias = nullptr;
  if (grid_w > 0) {  // written into plane_h x plane_w planes, ldc apart
    if (t_base < 0 || row0 < 0 || col0 < 0 || plane_h < 0 || plane_w < 0)
      bad("negative plane mapping");
    sum(t_base, len), sum(row0, plane_h), sum(col0, plane_w);  // grid positions stay in int64
    if (ldc < mul(plane_h, plane_w)) bad("ldc is smaller than a plane");
    if (rows > 0) {  // every image's planes inside c, images disjoint
      const int64_t planes = unit == 16 ? batch : images;
      check_extent("c", c.size(), planes, c_image_stride, mul(rows - 1, ldc), plane_h * plane_w);
      check_disjoint("c", planes, c_image_stride, sum(mul(rows - 1, ldc), plane_h * plane_w));
    }
    if (!bias_o.is_none()) {
      auto bv = view<float>(bias_o.cast<py::array>(), "bias", 1);
      if (bv.size() != rows) bad("bias length differs from the row count");
      bias = bv.data;
    }
  }
  k::ConvInputLayout& merge = call.merge;
  if (merging) {
    merge = merge_layout(merge_o, rows, images, t_base, len, c.size(), c_image_stride);
  } else if (grid_w <= 0) {
    check_row_block("c", c.size(), images, c_image_stride, rows, ldc, len);
  }
  View<double> stats{};
  if (!stats_o.is_none()) {
    stats = view<double>(stats_o.cast<py::array>(), "stats", 1, true);
    if (stats.size() != mul(images, rows, 2)) bad("stats must hold images * rows * 2 values");
  }
  call.check_finite = check_finite;
  if (len == 0 || images == 0) {  // no kernel call: its sums are of nothing (it zeroes its own)
    for (int64_t i = 0; i < stats.size(); ++i) stats.data[i] = 0.0;
    call.empty = true;
    return;
  }
  call.finite.assign(check_finite ? images : 0, 1);
  call.args = k::SpmmOffsetsArgs{ix.ptr.data, ix.off.data, val.data, sc.pos, sc.scratch, rows,
                                 b.data, b_image_stride, c.data, ldc, c_image_stride, len, images,
                                 nthreads, grid_w, t_base, row0, col0, plane_h, plane_w, bias,
                                 seg_len, seg_stride, unit, batch, merging ? &merge : nullptr,
                                 packing ? &pack : nullptr,
                                 check_finite ? call.finite.data() : nullptr,
                                 gridding ? &grid : nullptr, stats.data};
}

py::object spmm_offsets(py::array ptr_a, py::array off_a, py::array val_a, py::object pos_o,
                        py::object scratch_o, py::array b_a, int64_t b_image_stride,
                        py::array c_a, int64_t ldc, int64_t c_image_stride, int64_t len,
                        int64_t images, int nthreads, int64_t grid_w, int64_t t_base,
                        int64_t row0, int64_t col0, int64_t plane_h, int64_t plane_w,
                        py::object bias_o, int64_t seg_len, int64_t seg_stride, int64_t unit,
                        int64_t batch, py::object merge_o, py::object pack_o, bool check_finite,
                        py::object pack_grid_o, py::object stats_o) {
  SpmmOffsetsCall call;
  prepare_spmm_offsets(call, ptr_a, off_a, val_a, pos_o, scratch_o, b_a, b_image_stride, c_a,
                       ldc, c_image_stride, len, images, nthreads, grid_w, t_base, row0, col0,
                       plane_h, plane_w, bias_o, seg_len, seg_stride, unit, batch, merge_o,
                       pack_o, check_finite, pack_grid_o, stats_o);
  if (!call.empty) {
    py::gil_scoped_release release;
    sparsetrain::kernel_table().spmm_offsets(call.args);
  }
  return call.result();
}

// The same for sddmm_offsets.
struct SddmmOffsetsCall {
  k::SddmmOffsetsArgs args{};
  k::ConvInputLayout pack{};
  k::ConvOutputLayout grid{};
  SddmmOffsetsCall() = default;
  SddmmOffsetsCall(const SddmmOffsetsCall&) = delete;
  SddmmOffsetsCall& operator=(const SddmmOffsetsCall&) = delete;
};

void prepare_sddmm_offsets(SddmmOffsetsCall& call, py::array ptr_a, py::array off_a,
                           py::array a_a, int64_t lda, int64_t a_image_stride, py::array b_a,
                           int64_t b_image_stride, int64_t len, int64_t images, py::array out_a,
                           int nthreads, int64_t seg_len, int64_t seg_stride, py::object pack_o,
                           py::object pack_grid_o) {
  const auto ix = offsets_index(ptr_a, off_a, len, images);
  check_segments(seg_len, seg_stride);
  auto a = view<float>(a_a, "a", 1);
  auto b = view<float>(b_a, "b", 1);
  auto out = view<float>(out_a, "out", 1, true);
  if (out.size() != ix.nnz) bad("out and offsets differ in length");
  k::ConvInputLayout& pack = call.pack;
  const bool packing = !pack_o.is_none();
  if (packing)
    pack = pack_layout(pack_o, images, b.size(), b_image_stride, ix.extent, ix.nnz, len);
  else if (ix.nnz > 0)
    check_extent("b", b.size(), images, b_image_stride, ix.extent.max_off, len);
  k::ConvOutputLayout& grid = call.grid;
  const bool gridding = !pack_grid_o.is_none();
  if (gridding) {  // rows of len from the packed image's offset on, lda apart
    grid = grid_layout(pack_grid_o, images, a.size(), a_image_stride, "a");
    if (ix.rows > 0 && len > 0) {
      if (lda < len) bad("lda is smaller than len");
      if (sum(grid.offset, mul(ix.rows - 1, lda), len) > mul(grid.c, grid.per_channel))
        bad("pack_grid: rows of a reach past a packed image");
    }
  } else {
    check_row_block("a", a.size(), images, a_image_stride, ix.rows, lda, len);
  }
  call.args = k::SddmmOffsetsArgs{ix.ptr.data, ix.off.data, ix.rows, a.data, lda,
                                  a_image_stride, b.data, b_image_stride, len, images, out.data,
                                  nthreads, seg_len, seg_stride, packing ? &pack : nullptr,
                                  gridding ? &grid : nullptr};
}

void sddmm_offsets(py::array ptr_a, py::array off_a, py::array a_a, int64_t lda,
                   int64_t a_image_stride, py::array b_a, int64_t b_image_stride, int64_t len,
                   int64_t images, py::array out_a, int nthreads, int64_t seg_len,
                   int64_t seg_stride, py::object pack_o, py::object pack_grid_o) {
  SddmmOffsetsCall call;
  prepare_sddmm_offsets(call, ptr_a, off_a, a_a, lda, a_image_stride, b_a, b_image_stride, len,
                        images, out_a, nthreads, seg_len, seg_stride, pack_o, pack_grid_o);
  py::gil_scoped_release release;
  sparsetrain::kernel_table().sddmm_offsets(call.args);
}

// Keyword arguments of spmm_offsets / sddmm_offsets given as a dict (conv_grads_offsets takes
// one of each): a missing required one, or a name the call does not take, is an error.
// Held as a copy of the dict: its buffers stay referenced while the kernel runs without the
// GIL, even if another thread changes the caller's dict meanwhile.
class Kwargs {
 public:
  Kwargs(const py::dict& d, const char* call, std::initializer_list<const char*> names)
      : d_(d.attr("copy")().cast<py::dict>()), call_(call) {
    for (auto item : d_) {
      const auto key = item.first.cast<std::string>();
      bool known = false;
      for (const char* n : names) known = known || key == n;
      if (!known) bad(std::string(call) + ": unexpected argument '" + key + "'");
    }
  }
  py::array array(const char* name) const {
    if (!d_.contains(name)) bad(std::string(call_) + ": missing argument '" + name + "'");
    py::object o = d_[name];
    if (!py::isinstance<py::array>(o))
      bad(std::string(call_) + ": '" + name + "' must be a NumPy array");
    return o.cast<py::array>();
  }
  py::object object(const char* name) const {
    return d_.contains(name) ? py::object(d_[name]) : py::object(py::none());
  }
  template <class T>
  T get(const char* name) const {
    if (!d_.contains(name)) bad(std::string(call_) + ": missing argument '" + name + "'");
    return cast<T>(name);
  }
  template <class T>
  T get(const char* name, T fallback) const {
    return d_.contains(name) ? cast<T>(name) : fallback;
  }

 private:
  template <class T>
  T cast(const char* name) const {
    py::object o = d_[name];
    if constexpr (std::is_same_v<T, bool>) {
      if (!py::isinstance<py::bool_>(o))
        bad(std::string(call_) + ": '" + name + "' must be True or False");
    } else {
      if (!py::isinstance<py::int_>(o) || py::isinstance<py::bool_>(o))
        bad(std::string(call_) + ": '" + name + "' must be an integer");
    }
    try {
      return o.cast<T>();
    } catch (const py::cast_error&) {
      bad(std::string(call_) + ": '" + name + "' is out of range");
    }
  }

  py::dict d_;
  const char* call_;
};

// The arguments of f32_conv_grads_offsets: dx holds spmm_offsets' arguments for the input
// gradient, dv sddmm_offsets' for the values gradient, both packing the same NCHW output
// gradient (dx["b"] is dv["a"]) with the same pack_grid.
struct ConvGradsCall {
  Kwargs x, v;
  SpmmOffsetsCall cx;
  SddmmOffsetsCall cv;
  // call: the binding's name (for messages); call_dx / call_dv: it with " dx" / " dv".
  ConvGradsCall(const py::dict& dx, const py::dict& dv, const std::string& call,
                const char* call_dx, const char* call_dv)
      : x(dx, call_dx,
          {"ptr", "offsets", "values", "pos", "scratch", "b", "b_image_stride", "c", "ldc",
           "c_image_stride", "len", "images", "nthreads", "grid_w", "t_base", "row0", "col0",
           "plane_h", "plane_w", "seg_len", "seg_stride", "unit", "batch", "merge",
           "check_finite", "pack_grid"}),
        v(dv, call_dv,
          {"ptr", "offsets", "a", "lda", "a_image_stride", "b", "b_image_stride", "len",
           "images", "out", "nthreads", "seg_len", "seg_stride", "pack", "pack_grid"}) {
    const bool packs = !x.object("pack_grid").is_none();
    if (packs == v.object("pack_grid").is_none() || packs == v.object("pack").is_none())
      bad(call + ": dx and dv must both pack the output gradient (pack_grid), and dv the input "
          "(pack), or none of them (all packed beforehand)");
    prepare_spmm_offsets(cx, x.array("ptr"), x.array("offsets"), x.array("values"),
                         x.object("pos"), x.object("scratch"), x.array("b"),
                         x.get<int64_t>("b_image_stride"), x.array("c"), x.get<int64_t>("ldc"),
                         x.get<int64_t>("c_image_stride"), x.get<int64_t>("len"),
                         x.get<int64_t>("images"), x.get<int>("nthreads"),
                         x.get<int64_t>("grid_w", 0), x.get<int64_t>("t_base", 0),
                         x.get<int64_t>("row0", 0), x.get<int64_t>("col0", 0),
                         x.get<int64_t>("plane_h", 0), x.get<int64_t>("plane_w", 0), py::none(),
                         x.get<int64_t>("seg_len", 0), x.get<int64_t>("seg_stride", 0),
                         x.get<int64_t>("unit", 1), x.get<int64_t>("batch", 0),
                         x.object("merge"), py::none(), x.get<bool>("check_finite", false),
                         x.object("pack_grid"), py::none());
    prepare_sddmm_offsets(cv, v.array("ptr"), v.array("offsets"), v.array("a"),
                          v.get<int64_t>("lda"), v.get<int64_t>("a_image_stride"), v.array("b"),
                          v.get<int64_t>("b_image_stride"), v.get<int64_t>("len"),
                          v.get<int64_t>("images"), v.array("out"), v.get<int>("nthreads"),
                          v.get<int64_t>("seg_len", 0), v.get<int64_t>("seg_stride", 0),
                          v.object("pack"), v.object("pack_grid"));
    // The same dy: the same NCHW tensor, or (packed beforehand) dv's rows a view into dx's.
    const auto xb = view<float>(x.array("b"), "b", 1);
    const auto va = view<float>(v.array("a"), "a", 1);
    const auto at = [](const float* p) { return reinterpret_cast<std::uintptr_t>(p); };
    const bool inside = va.size() == 0 || (at(va.data) >= at(xb.data) &&
                                           at(va.data + va.size()) <= at(xb.data + xb.size()));
    const bool same_dy = packs ? xb.data == va.data && xb.size() == va.size() : inside;
    if (!same_dy || x.get<int64_t>("images") != v.get<int64_t>("images") ||
        x.get<int64_t>("nthreads") != v.get<int64_t>("nthreads"))
      bad(call + ": dx and dv must share the output gradient (dx['b'] and dv['a']), the image "
          "count and the thread count");
    // Packed beforehand, the one-pass form reads every input plane of an image (not just the
    // shifted runs sddmm_offsets checks): x must hold all of them.
    if (!packs && view<float>(v.array("b"), "b", 1).size() <
                      mul(v.get<int64_t>("images"), v.get<int64_t>("b_image_stride")))
      bad(call + ": dv's b (x, packed beforehand) must hold images x b_image_stride floats");
    if (packs && !(cx.grid == cv.grid))
      bad(call + ": dx and dv must pack the output gradient alike (pack_grid)");
    // The two outputs are written at once by different threads: they must not overlap.
    if (overlap(view<float>(x.array("c"), "c", 1, true),
                view<float>(v.array("out"), "out", 1, true)))
      bad(call + ": dx's c and dv's out overlap");
  }
};

// Both gradients of a convolution in one pass over the images (f32_conv_grads_offsets).
// Returns what spmm_offsets returns.
py::object conv_grads_offsets(const py::dict& dx, const py::dict& dv) {
  const ConvGradsCall c(dx, dv, "conv_grads_offsets", "conv_grads_offsets dx",
                        "conv_grads_offsets dv");
  {
    py::gil_scoped_release release;
    if (c.cx.empty)  // no images or positions: dv alone
      sparsetrain::kernel_table().sddmm_offsets(c.cv.args);
    else
      sparsetrain::kernel_table().conv_grads_offsets(c.cx.args, c.cv.args);
  }
  return c.cx.result();
}

// Whether conv_grads_offsets(dx, dv) loads each window of dy once for both gradients (the
// stride-1 plane form, conv_grads_form.h). Checks the arguments as conv_grads_offsets does.
bool conv_grads_one_pass(const py::dict& dx, const py::dict& dv) {
  const ConvGradsCall c(dx, dv, "conv_grads_one_pass", "conv_grads_one_pass dx",
                        "conv_grads_one_pass dv");
  return !c.cx.empty && k::conv_grads_one_pass_plane(c.cx.args, c.cv.args) > 0;
}

// x[:, :, ::sh, ::sw] of `planes` NCHW planes of h x w (grad = false: src = x, dst = the
// subsampled planes), or its gradient (grad = true: src = g, dst = dx).
void subsample(py::array src_a, py::array dst_a, int64_t planes, int64_t h, int64_t w,
               int64_t sh, int64_t sw, int nthreads, bool grad) {
  if (planes < 0 || h < 0 || w < 0) bad("subsample: negative size");
  if (sh < 1 || sw < 1) bad("subsample: strides must be >= 1");
  auto src = view<float>(src_a, "src", 1);
  auto dst = view<float>(dst_a, "dst", 1, true);
  const int64_t full = mul(planes, h, w), sampled = mul(planes, (h + sh - 1) / sh, (w + sw - 1) / sw);
  if (src.size() != (grad ? sampled : full) || dst.size() != (grad ? full : sampled))
    bad("subsample: src / dst sizes do not match planes x h x w and its subsampling");
  if (overlap(src, dst)) bad("subsample: src and dst must not overlap");
  const k::SubsampleArgs args{src.data, dst.data, planes, h, w, sh, sw, nthreads};
  py::gil_scoped_release release;
  if (grad)
    sparsetrain::kernel_table().subsample_grad(args);
  else
    sparsetrain::kernel_table().subsample(args);
}

// Packs (or unpacks) x; a pack with check_finite also returns whether every value of x is
// finite (None otherwise).
py::object conv_input(bool pack, py::array x_a, py::array packed_a, int64_t n, int64_t c,
                      int64_t unit, int64_t h, int64_t w, int64_t sh, int64_t sw, int64_t pt,
                      int64_t pl, int64_t hq, int64_t wq, int nthreads, bool check_finite) {
  auto x = view<float>(x_a, "x", 1, !pack);
  auto packed = view<float>(packed_a, "packed", 1, pack);
  const auto l = conv_input_layout(n, c, unit, h, w, sh, sw, pt, pl, hq, wq);
  if (x.size() != mul(n, c, h, w)) bad("x has the wrong size for the layout");
  if (packed.size() != mul(mul(l.groups, c, sh, sw), hq, wq, unit))
    bad("packed has the wrong size for the layout");
  std::vector<unsigned char> finite(check_finite && pack ? mul(l.groups, c) : 0, 1);
  k::ConvInputArgs args{l, x.data, packed.data, nthreads, finite.empty() ? nullptr : finite.data()};
  {
    py::gil_scoped_release release;
    if (pack)
      sparsetrain::kernel_table().conv_pack_input(args);
    else
      sparsetrain::kernel_table().conv_unpack_grad_input(args);
  }
  return check_finite && pack ? py::object(all_set(finite)) : py::none();
}

void conv_pack_grad_output(py::array y_a, py::object grid_o, py::object sums_o, int64_t n,
                           int64_t c, int64_t unit, int64_t ho, int64_t wo, int64_t wq,
                           int64_t per_channel, int64_t offset, int nthreads) {
  auto y = view<float>(y_a, "y", 1);
  const bool sums_only = grid_o.is_none();
  View<float> grid{};
  if (!sums_only) grid = view<float>(grid_o.cast<py::array>(), "grid", 1, true);
  const auto l = conv_output_layout(n, c, unit, ho, wo, wq, per_channel, offset);
  if (sums_only && (unit != 1 || sums_o.is_none()))
    bad("without a grid only channel sums are computed: unit 1 and channel_sums needed");
  const int64_t groups = l.groups;
  if (y.size() != mul(n, c, ho, wo)) bad("y has the wrong size for the layout");
  if (!sums_only && grid.size() < mul(groups, c, per_channel, unit))
    bad("grid is too small for the layout");
  double* sums = nullptr;
  if (!sums_o.is_none()) {
    auto sv = view<double>(sums_o.cast<py::array>(), "channel_sums", 1, true);
    if (sv.size() != mul(groups, c)) bad("channel_sums must hold groups * channels values");
    sums = sv.data;
  }
  k::ConvOutputArgs args{l, y.data, sums_only ? nullptr : grid.data, sums, nthreads};
  py::gil_scoped_release release;
  sparsetrain::kernel_table().conv_pack_grad_output(args);
}

// Both direct-convolution kernels: every check that keeps their reads and writes in bounds.
k::ConvDirectArgs conv_direct_args(py::array ptr_a, py::array plane_a, py::array dy_a,
                                   py::array slot_a, py::array shift_a, py::array src_a,
                                   int64_t src_image_stride, int64_t sh, int64_t sw,
                                   int64_t oh, int64_t ow, int64_t images, int nthreads) {
  auto ptr = view<int64_t>(ptr_a, "ptr", 1);
  auto plane = view<int64_t>(plane_a, "plane", 1);
  auto dy = view<int32_t>(dy_a, "dy", 1);
  auto slot = view<int32_t>(slot_a, "slot", 1);
  auto shift = view<int64_t>(shift_a, "shift_w", 1);
  auto src = view<float>(src_a, "src", 1);
  const int64_t rows = ptr.size() - 1, nnz = plane.size();
  if (rows < 0) bad("row pointer is empty");
  if (ptr.data[0] != 0 || ptr.data[rows] != nnz) bad("row pointer must run from 0 to nnz");
  for (int64_t r = 0; r < rows; ++r)
    if (ptr.data[r + 1] < ptr.data[r]) bad("row pointer decreases");
  if (dy.size() != nnz || slot.size() != nnz) bad("dy / slot lengths differ from nnz");
  if (shift.size() < 1 || shift.size() > 64) bad("between 1 and 64 column shifts");
  // Shifts past the row only ever meet masked-off lanes; bounded so that the kernels' column
  // arithmetic (and the pointers it forms before masking) cannot overflow.
  for (int64_t s = 0; s < shift.size(); ++s)
    if (shift.data[s] < -(int64_t{1} << 40) || shift.data[s] > (int64_t{1} << 40))
      bad("column shift out of range");
  if (sh < 0 || sw < 0 || oh < 0 || ow < 0 || images < 0 || src_image_stride < 0)
    bad("negative size");
  // Planes far beyond any real one would overflow the kernels' column / row arithmetic (a
  // nonzero's plane must fit its image anyway: checked below).
  if (sh > (int64_t{1} << 40) || sw > (int64_t{1} << 40)) bad("source plane too large");
  for (int64_t j = 0; j < nnz; ++j) {
    if (plane.data[j] < 0 || plane.data[j] > src_image_stride - mul(sh, sw))
      bad("a source plane lies outside the image");
    if (slot.data[j] < 0 || slot.data[j] >= shift.size()) bad("slot out of range");
  }
  if (images > 0 && src.size() < mul(images, src_image_stride)) bad("src is smaller than its images");
  k::ConvDirectArgs a{};
  a.ptr = ptr.data;
  a.plane = plane.data;
  a.dy = dy.data;
  a.slot = slot.data;
  a.shift_w = shift.data;
  a.slots = shift.size();
  a.rows = rows;
  a.src = src.data;
  a.src_image_stride = src_image_stride;
  a.sh = sh;
  a.sw = sw;
  a.oh = oh;
  a.ow = ow;
  a.images = images;
  a.nthreads = nthreads;
  return a;
}

void conv_direct_spmm(py::array ptr_a, py::array plane_a, py::array dy_a, py::array slot_a,
                      py::array shift_a, py::array val_a, py::object pos_o, py::object scratch_o,
                      py::array src_a, int64_t src_image_stride, int64_t sh, int64_t sw,
                      py::array out_a, int64_t oh, int64_t ow, py::object bias_o, int64_t images,
                      int nthreads) {
  auto a = conv_direct_args(ptr_a, plane_a, dy_a, slot_a, shift_a, src_a, src_image_stride, sh,
                            sw, oh, ow, images, nthreads);
  const int64_t nnz = a.ptr[a.rows];
  auto val = view<float>(val_a, "values", 1);
  auto out = view<float>(out_a, "out", 1, true);
  if (val.size() != nnz) bad("values and index differ in length");
  if (out.size() != mul(images, a.rows, oh, ow)) bad("out must hold images x rows x oh x ow");
  a.val = val.data;
  a.out = out.data;
  a.out_image_stride = a.rows * oh * ow;
  const Scatter sc = scatter_args(pos_o, scratch_o, nnz);
  a.pos = sc.pos;
  a.scratch = sc.scratch;
  if (!bias_o.is_none()) {
    auto bv = view<float>(bias_o.cast<py::array>(), "bias", 1);
    if (bv.size() != a.rows) bad("bias length differs from the row count");
    a.bias = bv.data;
  }
  py::gil_scoped_release release;
  sparsetrain::kernel_table().conv_direct_spmm(a);
}

void conv_direct_sddmm(py::array ptr_a, py::array plane_a, py::array dy_a, py::array slot_a,
                       py::array shift_a, py::array grad_a, int64_t oh, int64_t ow, py::array src_a,
                       int64_t src_image_stride, int64_t sh, int64_t sw, int64_t images,
                       py::array out_a, int nthreads) {
  auto a = conv_direct_args(ptr_a, plane_a, dy_a, slot_a, shift_a, src_a, src_image_stride, sh,
                            sw, oh, ow, images, nthreads);
  auto grad = view<float>(grad_a, "grad", 1);
  auto out = view<float>(out_a, "out", 1, true);
  if (out.size() != a.ptr[a.rows]) bad("out must hold one value per nonzero");
  if (grad.size() != mul(images, a.rows, oh, ow)) bad("grad must hold images x rows x oh x ow");
  a.grad = grad.data;
  a.grad_image_stride = a.rows * oh * ow;
  a.out = out.data;
  py::gil_scoped_release release;
  sparsetrain::kernel_table().conv_direct_sddmm(a);
}

void validate_csr(py::array ptr_a, py::array idx_a, int64_t rows, int64_t cols) {
  auto ptr = view<int64_t>(ptr_a, "row pointer", 1);
  auto idx = view<int32_t>(idx_a, "column indices", 1);
  if (ptr.size() < 1) bad("row pointer is empty");
  py::gil_scoped_release release;
  sparsetrain::formats::validate_csr(ptr.data, ptr.size(), idx.data, idx.size(), rows, cols);
}

void csr_transpose(py::array ptr_a, py::array idx_a, int64_t cols, py::array tptr_a,
                   py::array tidx_a, py::array pos_a) {
  auto ptr = view<int64_t>(ptr_a, "row pointer", 1);
  auto idx = view<int32_t>(idx_a, "column indices", 1);
  auto tptr = view<int64_t>(tptr_a, "tptr", 1, true);
  auto tidx = view<int32_t>(tidx_a, "tidx", 1, true);
  auto pos = view<int64_t>(pos_a, "pos", 1, true);
  const int64_t rows = ptr.size() - 1;
  if (rows < 0) bad("row pointer is empty");
  if (rows > INT32_MAX) bad("more than 2^31-1 rows: the transposed index stores rows as int32");
  // Full validation first: the transpose indexes tptr by column.
  {
    py::gil_scoped_release release;
    sparsetrain::formats::validate_csr(ptr.data, ptr.size(), idx.data, idx.size(), rows, cols);
  }
  if (tptr.size() != sum(cols, 1) || tidx.size() != idx.size() || pos.size() != idx.size())
    bad("transpose outputs have the wrong lengths");
  py::gil_scoped_release release;
  sparsetrain::formats::csr_transpose(ptr.data, idx.data, rows, cols, tptr.data, tidx.data,
                                      pos.data);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "sparsetrain native kernels (internal; use the sparsetrain package)";
  m.attr("__version__") = SPARSETRAIN_VERSION;
  m.attr("BATCH_ALIGN") = k::kBatchAlign;

  // Resolve the ISA now so a bad SPARSETRAIN_ISA fails at import with its message.
  sparsetrain::current_isa();

  m.def("spmm", &spmm, py::arg("ptr"), py::arg("idx"), py::arg("values"), py::arg("pos"),
        py::arg("scratch"), py::arg("b"),
        py::arg("c"), py::arg("nthreads"));
  m.def("spmmt", &spmmt, py::arg("ptr"), py::arg("idx"), py::arg("values"), py::arg("col_ptr"),
        py::arg("b"), py::arg("c"), py::arg("nthreads"));
  m.def("sddmm", &sddmm, py::arg("ptr"), py::arg("idx"), py::arg("a"), py::arg("b"),
        py::arg("out"), py::arg("nthreads"));
  m.def("pack", &pack, py::arg("src"), py::arg("dst"), py::arg("nthreads"));
  m.def("unpack", &unpack, py::arg("src"), py::arg("dst"), py::arg("bias"), py::arg("nthreads"));
  m.def("spmm_offsets", &spmm_offsets, py::arg("ptr"), py::arg("offsets"), py::arg("values"),
        py::arg("pos"), py::arg("scratch"), py::arg("b"), py::arg("b_image_stride"), py::arg("c"),
        py::arg("ldc"), py::arg("c_image_stride"), py::arg("len"), py::arg("images"),
        py::arg("nthreads"), py::arg("grid_w") = 0, py::arg("t_base") = 0, py::arg("row0") = 0,
        py::arg("col0") = 0, py::arg("plane_h") = 0, py::arg("plane_w") = 0,
        py::arg("bias") = py::none(), py::arg("seg_len") = 0, py::arg("seg_stride") = 0,
        py::arg("unit") = 1, py::arg("batch") = 0, py::arg("merge") = py::none(), py::arg("pack") = py::none(),
        py::arg("check_finite") = false, py::arg("pack_grid") = py::none(),
        py::arg("stats") = py::none());
  m.def("sddmm_offsets", &sddmm_offsets, py::arg("ptr"), py::arg("offsets"), py::arg("a"),
        py::arg("lda"), py::arg("a_image_stride"), py::arg("b"), py::arg("b_image_stride"),
        py::arg("len"), py::arg("images"), py::arg("out"), py::arg("nthreads"),
        py::arg("seg_len") = 0, py::arg("seg_stride") = 0, py::arg("pack") = py::none(),
        py::arg("pack_grid") = py::none());
  m.def("conv_grads_offsets", &conv_grads_offsets, py::arg("dx"), py::arg("dv"));
  m.def("conv_grads_one_pass", &conv_grads_one_pass, py::arg("dx"), py::arg("dv"));
  m.def("conv_pack_input",
        [](py::array x, py::array packed, int64_t n, int64_t c, int64_t unit, int64_t h,
           int64_t w, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t hq, int64_t wq,
           int nthreads, bool check_finite) {
          return conv_input(true, x, packed, n, c, unit, h, w, sh, sw, pt, pl, hq, wq, nthreads,
                            check_finite);
        },
        py::arg("x"), py::arg("packed"), py::arg("n"), py::arg("c"), py::arg("unit"), py::arg("h"),
        py::arg("w"), py::arg("sh"), py::arg("sw"), py::arg("pt"), py::arg("pl"), py::arg("hq"),
        py::arg("wq"), py::arg("nthreads"), py::arg("check_finite") = false);
  m.def("conv_unpack_grad_input", [](py::array x, py::array packed, int64_t n, int64_t c,
                                     int64_t unit, int64_t h, int64_t w, int64_t sh, int64_t sw,
                                     int64_t pt, int64_t pl, int64_t hq, int64_t wq, int nthreads) {
    conv_input(false, x, packed, n, c, unit, h, w, sh, sw, pt, pl, hq, wq, nthreads, false);
  });
  m.def("conv_pack_grad_output", &conv_pack_grad_output);
  m.def("conv_direct_spmm", &conv_direct_spmm);
  m.def("conv_direct_sddmm", &conv_direct_sddmm);
  m.def("subsample", &subsample, py::arg("src"), py::arg("dst"), py::arg("planes"), py::arg("h"),
        py::arg("w"), py::arg("sh"), py::arg("sw"), py::arg("nthreads"), py::arg("grad") = false);
  m.def("validate_csr", &validate_csr, py::arg("ptr"), py::arg("idx"), py::arg("rows"),
        py::arg("cols"));
  m.def("csr_transpose", &csr_transpose, py::arg("ptr"), py::arg("idx"), py::arg("cols"),
        py::arg("tptr"), py::arg("tidx"), py::arg("pos"));

  m.def("get_isa", [] { return std::string(sparsetrain::isa_name(sparsetrain::current_isa())); });
  m.def("set_isa", [](const std::string& name) { sparsetrain::set_isa(sparsetrain::isa_from_name(name)); },
        py::arg("name"));
  m.def("supported_isas", [] {
    std::vector<std::string> out;
    for (Isa isa : sparsetrain::supported_isas()) out.emplace_back(sparsetrain::isa_name(isa));
    return out;
  });
  m.def("advise_hugepages", &sparsetrain::memory::advise_hugepages, py::arg("address"),
        py::arg("nbytes"));
  m.def("set_malloc_reuse", &sparsetrain::memory::set_malloc_reuse, py::arg("keep"));
  m.def("release_free_memory", &sparsetrain::memory::release_free_memory);
  m.def("openmp_max_threads", [] { return omp_get_max_threads(); });
}
