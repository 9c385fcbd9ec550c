"""sparsetrain native kernels (internal; use the sparsetrain package).

Every function takes keyword arguments only (conv_grads_offsets and conv_grads_one_pass take
two dicts of keyword arguments). Buffers are C-contiguous NumPy arrays of the dtype each
kernel expects (float32 values, int64 pointers and offsets, int32 column indices); a wrong
dtype, rank, size or layout raises ValueError.
"""

from typing import Any, Optional

import numpy

__version__: str
BATCH_ALIGN: int

class ConvInputLayout:
    """n NCHW images of c channels, h x w, in groups of unit (1 or 16) images, as sh x sw
    phase planes of hq x wq holding the input padded by pt rows and pl columns."""

    def __init__(self, *, n: int, c: int, unit: int, h: int, w: int, sh: int, sw: int, pt: int,
                 pl: int, hq: int, wq: int) -> None:
        """A checked layout (ValueError if the planes cannot hold the padded input)."""
    @property
    def n(self) -> int: ...
    @property
    def c(self) -> int: ...
    @property
    def groups(self) -> int:
        """ceil(n / unit)."""
    @property
    def unit(self) -> int: ...
    @property
    def h(self) -> int: ...
    @property
    def w(self) -> int: ...
    @property
    def sh(self) -> int: ...
    @property
    def sw(self) -> int: ...
    @property
    def pt(self) -> int: ...
    @property
    def pl(self) -> int: ...
    @property
    def hq(self) -> int: ...
    @property
    def wq(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...

class ConvOutputLayout:
    """n NCHW output images of c channels, ho x wo, in groups of unit (1 or 16) images, on a
    grid of wq columns: pixel (y, x) of a channel at offset + y * wq + x, channels
    per_channel apart."""

    def __init__(self, *, n: int, c: int, unit: int, ho: int, wo: int, wq: int,
                 per_channel: int, offset: int) -> None:
        """A checked layout (ValueError if a channel cannot hold its pixels)."""
    @property
    def n(self) -> int: ...
    @property
    def c(self) -> int: ...
    @property
    def groups(self) -> int:
        """ceil(n / unit)."""
    @property
    def unit(self) -> int: ...
    @property
    def ho(self) -> int: ...
    @property
    def wo(self) -> int: ...
    @property
    def wq(self) -> int: ...
    @property
    def per_channel(self) -> int: ...
    @property
    def offset(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...

# -- batch-major products (linear layers) -------------------------------------------------
def spmm(*, ptr: numpy.ndarray, idx: numpy.ndarray, values: numpy.ndarray,
         pos: Optional[numpy.ndarray], scratch: Optional[numpy.ndarray], b: numpy.ndarray,
         c: numpy.ndarray, nthreads: int) -> None:
    """C = A B for the CSR matrix A (or, with pos, its transpose) and batch-major B, C."""

def spmmt(*, ptr: numpy.ndarray, idx: numpy.ndarray, values: numpy.ndarray,
          col_ptr: numpy.ndarray, b: numpy.ndarray, c: numpy.ndarray, nthreads: int) -> None:
    """C = A^T B from A's CSR index (col_ptr: its column counts, to balance threads)."""

def sddmm(*, ptr: numpy.ndarray, idx: numpy.ndarray, a: numpy.ndarray, b: numpy.ndarray,
          out: numpy.ndarray, nthreads: int) -> None:
    """out[j] = <A[r], B[idx[j]]> for every nonzero j of row r: the values' gradient."""

def pack(*, src: numpy.ndarray, dst: numpy.ndarray, nthreads: int) -> None:
    """(batch, features) src -> batch-major dst (rows of padded batch, zero padding)."""

def unpack(*, src: numpy.ndarray, dst: numpy.ndarray, bias: Optional[numpy.ndarray],
           nthreads: int) -> None:
    """Batch-major src -> (batch, features) dst, plus bias if given."""

# -- offsets products (convolutions) ------------------------------------------------------
def spmm_offsets(*, ptr: numpy.ndarray, offsets: numpy.ndarray, values: numpy.ndarray,
                 pos: Optional[numpy.ndarray], scratch: Optional[numpy.ndarray],
                 b: numpy.ndarray, b_image_stride: int, c: numpy.ndarray, ldc: int,
                 c_image_stride: int, len: int, images: int, nthreads: int, grid_w: int = 0,
                 t_base: int = 0, row0: int = 0, col0: int = 0, plane_h: int = 0,
                 plane_w: int = 0, bias: Optional[numpy.ndarray] = None, seg_len: int = 0,
                 seg_stride: int = 0, unit: int = 1, batch: int = 0,
                 merge: Optional[ConvInputLayout] = None,
                 pack: Optional[ConvInputLayout] = None, check_finite: bool = False,
                 pack_grid: Optional[ConvOutputLayout] = None,
                 stats: Optional[numpy.ndarray] = None) -> Optional[bool]:
    """C_n[r, :len] = sum_j values[j] * B_n[offsets[j]:][:len] per image n; with
    check_finite, whether the b it packed was all finite (else None)."""

def sddmm_offsets(*, ptr: numpy.ndarray, offsets: numpy.ndarray, a: numpy.ndarray, lda: int,
                  a_image_stride: int, b: numpy.ndarray, b_image_stride: int, len: int,
                  images: int, out: numpy.ndarray, nthreads: int, seg_len: int = 0,
                  seg_stride: int = 0, pack: Optional[ConvInputLayout] = None,
                  pack_grid: Optional[ConvOutputLayout] = None) -> None:
    """out[j] = sum_n sum_t A_n[r, t] * B_n[offsets[j] + t] for every nonzero j of row r."""

def conv_grads_offsets(dx: dict[str, Any], dv: dict[str, Any]) -> Optional[bool]:
    """Both gradients of a convolution in one pass: spmm_offsets(**dx), sddmm_offsets(**dv)."""

def conv_grads_one_pass(dx: dict[str, Any], dv: dict[str, Any]) -> bool:
    """Whether conv_grads_offsets(dx, dv) loads each window of dy once for both gradients."""

# -- conv layout changes ------------------------------------------------------------------
def conv_pack_input(*, x: numpy.ndarray, packed: numpy.ndarray, layout: ConvInputLayout,
                    nthreads: int, check_finite: bool = False) -> Optional[bool]:
    """NCHW x -> its phase planes; with check_finite, whether x is all finite (else None)."""

def conv_unpack_grad_input(*, x: numpy.ndarray, packed: numpy.ndarray, layout: ConvInputLayout,
                           nthreads: int) -> None:
    """Phase planes (an input gradient) -> NCHW x, the padding dropped."""

def conv_pack_grad_output(*, y: numpy.ndarray, grid: Optional[numpy.ndarray],
                          channel_sums: Optional[numpy.ndarray], layout: ConvOutputLayout,
                          nthreads: int) -> None:
    """NCHW y -> its bordered grid (grid None: none), and its channel sums if given."""

# -- direct convolutions ------------------------------------------------------------------
def conv_direct_spmm(*, ptr: numpy.ndarray, plane: numpy.ndarray, dy: numpy.ndarray,
                     slot: numpy.ndarray, shift_w: numpy.ndarray, values: numpy.ndarray,
                     pos: Optional[numpy.ndarray], scratch: Optional[numpy.ndarray],
                     src: numpy.ndarray, src_image_stride: int, sh: int, sw: int,
                     out: numpy.ndarray, oh: int, ow: int, bias: Optional[numpy.ndarray],
                     images: int, nthreads: int) -> None:
    """A stride-1 convolution on NCHW sh x sw planes of src into oh x ow planes of out."""

def conv_direct_sddmm(*, ptr: numpy.ndarray, plane: numpy.ndarray, dy: numpy.ndarray,
                      slot: numpy.ndarray, shift_w: numpy.ndarray, grad: numpy.ndarray, oh: int,
                      ow: int, src: numpy.ndarray, src_image_stride: int, sh: int, sw: int,
                      images: int, out: numpy.ndarray, nthreads: int) -> None:
    """The values' gradient of conv_direct_spmm: out[j] = sum over images and pixels."""

# -- subsampling --------------------------------------------------------------------------
def subsample(*, src: numpy.ndarray, dst: numpy.ndarray, planes: int, h: int, w: int, sh: int,
              sw: int, nthreads: int, grad: bool = False) -> None:
    """dst = src[:, :, ::sh, ::sw] of planes h x w; grad: its gradient (zeros elsewhere)."""

# -- index formats ------------------------------------------------------------------------
def validate_csr(*, ptr: numpy.ndarray, idx: numpy.ndarray, rows: int, cols: int) -> None:
    """ValueError unless ptr / idx are a valid rows x cols CSR index (sorted, in range)."""

def csr_transpose(*, ptr: numpy.ndarray, idx: numpy.ndarray, cols: int, tptr: numpy.ndarray,
                  tidx: numpy.ndarray, pos: numpy.ndarray) -> None:
    """The transposed index (tptr, tidx) of a validated CSR index, pos its CSR positions."""

# -- run time -----------------------------------------------------------------------------
def get_isa() -> str:
    """The ISA whose kernels run (scalar, avx2 or avx512)."""

def set_isa(*, name: str) -> None:
    """Run the kernels of this ISA (ValueError if unknown or not supported here)."""

def supported_isas() -> list[str]:
    """The ISAs this build and this CPU support, best last."""

def advise_hugepages(*, address: int, nbytes: int) -> bool:
    """Ask for transparent huge pages on a range; whether it was granted."""

def set_malloc_reuse(*, keep: bool) -> bool:
    """Whether malloc keeps freed memory for reuse; whether the setting took."""

def release_free_memory() -> bool:
    """Hand malloc's free memory back to the system; whether it could."""

def openmp_max_threads() -> int:
    """OpenMP's thread count for the next parallel region."""
