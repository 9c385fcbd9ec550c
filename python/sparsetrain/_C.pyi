"""sparsetrain native kernels (internal; use the sparsetrain package).

Every function takes keyword arguments only. Buffers are C-contiguous NumPy arrays of the
dtype each kernel expects (float32 values, int64 pointers and offsets, int32 column indices); a
wrong dtype, rank, size or layout raises ValueError.
"""

import numpy

__version__: str
BATCH_ALIGN: int
BATCH_CHUNK: int

class ConvInputLayout:
    """n NCHW images of c channels, h x w, in groups of unit (1 or 16) images, as sh x sw
    phase planes of hq x wq holding the input padded by pt rows and pl columns."""

    def __init__(
        self,
        *,
        n: int,
        c: int,
        unit: int,
        h: int,
        w: int,
        sh: int,
        sw: int,
        pt: int,
        pl: int,
        hq: int,
        wq: int,
        nhwc: bool = False,
    ) -> None:
        """A checked layout (ValueError if the planes cannot hold the padded input); nhwc: x
        is channels_last (N, H, W, C) instead of NCHW."""
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
    @property
    def nhwc(self) -> bool: ...
    def __eq__(self, other: object) -> bool: ...

class ConvOutputLayout:
    """n NCHW output images of c channels, ho x wo, in groups of unit (1 or 16) images, on a
    grid of wq columns: pixel (y, x) of a channel at offset + y * wq + x, channels
    per_channel apart."""

    def __init__(
        self,
        *,
        n: int,
        c: int,
        unit: int,
        ho: int,
        wo: int,
        wq: int,
        per_channel: int,
        offset: int,
        nhwc: bool = False,
    ) -> None:
        """A checked layout (ValueError if a channel cannot hold its pixels); nhwc: y is
        channels_last."""
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
    @property
    def nhwc(self) -> bool: ...
    def __eq__(self, other: object) -> bool: ...

# -- batch-major products (linear layers) -------------------------------------------------
def spmm(
    *,
    ptr: numpy.ndarray,
    idx: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    b: numpy.ndarray,
    c: numpy.ndarray,
    nthreads: int,
) -> None:
    """C = A B for the CSR matrix A (or, with pos, its transpose) and batch-major B, C
    (float32, or bf16 bits as uint16; values float32, bf16-valued for bf16)."""

def spmmt(
    *,
    ptr: numpy.ndarray,
    idx: numpy.ndarray,
    values: numpy.ndarray,
    col_ptr: numpy.ndarray,
    b: numpy.ndarray,
    c: numpy.ndarray,
    nthreads: int,
) -> None:
    """C = A^T B from A's CSR index (col_ptr: its column counts, to balance threads)."""

def sddmm(
    *,
    ptr: numpy.ndarray,
    idx: numpy.ndarray,
    a: numpy.ndarray,
    b: numpy.ndarray,
    out: numpy.ndarray,
    nthreads: int,
) -> None:
    """out[j] = <A[r], B[idx[j]]> for every nonzero j of row r: the values' gradient."""

def pack(
    *,
    src: numpy.ndarray,
    dst: numpy.ndarray,
    nthreads: int,
    sums: numpy.ndarray | None = None,
) -> None:
    """(batch, features) src -> batch-major dst (rows of padded batch, zero padding); sums, if
    given (float32, one per feature), gets each feature's sum over the batch."""

def unpack(
    *, src: numpy.ndarray, dst: numpy.ndarray, bias: numpy.ndarray | None, nthreads: int
) -> None:
    """Batch-major src -> (batch, features) dst, plus bias if given."""

# -- offsets products (convolutions): one function per kernel form ----------------------
# The product of every spmm form: C_n[r, t] = sum_j values[j] * B_n[offsets[j] + t] per image
# n (b image_stride apart), t in [0, len) (or only t % seg_stride < seg_len); with pos, the
# values are in CSR order and scattered by pos into scratch first. pack / pack_grid: b is the
# NCHW input / output gradient, packed image by image by the kernel (check_finite: return
# whether what it packed was all finite, else None).
def spmm_offsets_rows(
    *,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    b: numpy.ndarray,
    b_image_stride: int,
    c: numpy.ndarray,
    ldc: int,
    c_image_stride: int,
    len: int,
    images: int,
    nthreads: int,
    seg_len: int = 0,
    seg_stride: int = 0,
    pack: ConvInputLayout | None = None,
    pack_grid: ConvOutputLayout | None = None,
    check_finite: bool = False,
    stats: numpy.ndarray | None = None,
) -> bool | None:
    """The product into rows of c (ldc apart, images c_image_stride apart); stats: each
    image x row's sum and sum of squares (float64, images * rows * 2)."""

def spmm_offsets_planes(
    *,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    b: numpy.ndarray,
    b_image_stride: int,
    c: numpy.ndarray,
    ldc: int,
    c_image_stride: int,
    len: int,
    images: int,
    nthreads: int,
    grid_w: int,
    plane_h: int,
    plane_w: int,
    t_base: int = 0,
    row0: int = 0,
    col0: int = 0,
    bias: numpy.ndarray | None = None,
    seg_len: int = 0,
    seg_stride: int = 0,
    pack: ConvInputLayout | None = None,
    pack_grid: ConvOutputLayout | None = None,
    check_finite: bool = False,
    stats: numpy.ndarray | None = None,
    pixel_stride: int = 1,
) -> bool | None:
    """The product straight into NCHW planes: position t is grid point t + t_base of a grid
    of grid_w columns, kept inside the plane_h x plane_w window at (row0, col0), plus bias.
    pixel_stride > 1 (ldc 1): channels_last pixels instead."""

def spmm_offsets_planes16(
    *,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    b: numpy.ndarray,
    b_image_stride: int,
    c: numpy.ndarray,
    ldc: int,
    c_image_stride: int,
    len: int,
    images: int,
    nthreads: int,
    grid_w: int,
    plane_h: int,
    plane_w: int,
    batch: int,
    t_base: int = 0,
    row0: int = 0,
    col0: int = 0,
    bias: numpy.ndarray | None = None,
    seg_len: int = 0,
    seg_stride: int = 0,
    stats: numpy.ndarray | None = None,
    pixel_stride: int = 1,
) -> bool | None:
    """The planes product on a batch-innermost b (16 images per grid point, images = groups):
    lane m of group n into image 16 n + m's planes, lanes past batch dropped."""

def spmm_offsets_merge(
    *,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    b: numpy.ndarray,
    b_image_stride: int,
    c: numpy.ndarray,
    c_image_stride: int,
    len: int,
    images: int,
    nthreads: int,
    merge: ConvInputLayout,
    t_base: int = 0,
    seg_len: int = 0,
    seg_stride: int = 0,
    pack: ConvInputLayout | None = None,
    pack_grid: ConvOutputLayout | None = None,
    check_finite: bool = False,
) -> bool | None:
    """A strided input gradient straight into NCHW c: rows are merge's channels x stride
    phases, position t phase-plane pixel t_base + t, each channel's phases interleaved."""

def sddmm_offsets(
    *,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    a: numpy.ndarray,
    lda: int,
    a_image_stride: int,
    b: numpy.ndarray,
    b_image_stride: int,
    len: int,
    images: int,
    out: numpy.ndarray,
    nthreads: int,
    seg_len: int = 0,
    seg_stride: int = 0,
    pack: ConvInputLayout | None = None,
    pack_grid: ConvOutputLayout | None = None,
) -> None:
    """out[j] = sum_n sum_t A_n[r, t] * B_n[offsets[j] + t] for every nonzero j of row r."""

# Both gradients of a convolution in one call: the input gradient's form on the transposed
# index (t_ptr, t_offsets; values in CSR order scattered by pos) reading dy into dx, and
# sddmm_offsets on the forward index (ptr, offsets) reading dy (its rows from a_offset on in
# each image, lda apart) and x into dv. pack: the values gradient packs x; pack_grid: both
# pack dy (the two go together). Returns what the input gradient's form returns.
def conv_grads_offsets_planes(
    *,
    t_ptr: numpy.ndarray,
    t_offsets: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    dy: numpy.ndarray,
    dy_image_stride: int,
    dx: numpy.ndarray,
    ldx: int,
    dx_image_stride: int,
    dx_len: int,
    grid_w: int,
    plane_h: int,
    plane_w: int,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    lda: int,
    x: numpy.ndarray,
    x_image_stride: int,
    len: int,
    dv: numpy.ndarray,
    images: int,
    nthreads: int,
    t_base: int = 0,
    row0: int = 0,
    col0: int = 0,
    dx_seg_len: int = 0,
    dx_seg_stride: int = 0,
    a_offset: int = 0,
    seg_len: int = 0,
    seg_stride: int = 0,
    pack: ConvInputLayout | None = None,
    pack_grid: ConvOutputLayout | None = None,
    check_finite: bool = False,
    dx_pixel_stride: int = 1,
) -> bool | None:
    """spmm_offsets_planes into dx and sddmm_offsets into dv in one call."""

def conv_grads_one_pass_planes(
    *,
    t_ptr: numpy.ndarray,
    t_offsets: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    dy: numpy.ndarray,
    dy_image_stride: int,
    dx: numpy.ndarray,
    ldx: int,
    dx_image_stride: int,
    dx_len: int,
    grid_w: int,
    plane_h: int,
    plane_w: int,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    lda: int,
    x: numpy.ndarray,
    x_image_stride: int,
    len: int,
    dv: numpy.ndarray,
    images: int,
    nthreads: int,
    t_base: int = 0,
    row0: int = 0,
    col0: int = 0,
    dx_seg_len: int = 0,
    dx_seg_stride: int = 0,
    a_offset: int = 0,
    seg_len: int = 0,
    seg_stride: int = 0,
    pack: ConvInputLayout | None = None,
    pack_grid: ConvOutputLayout | None = None,
    check_finite: bool = False,
    dx_pixel_stride: int = 1,
) -> bool:
    """Whether conv_grads_offsets_planes with these arguments loads each window of dy once
    for both gradients."""

def conv_grads_offsets_planes16(
    *,
    t_ptr: numpy.ndarray,
    t_offsets: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    dy: numpy.ndarray,
    dy_image_stride: int,
    dx: numpy.ndarray,
    ldx: int,
    dx_image_stride: int,
    dx_len: int,
    grid_w: int,
    plane_h: int,
    plane_w: int,
    batch: int,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    lda: int,
    x: numpy.ndarray,
    x_image_stride: int,
    len: int,
    dv: numpy.ndarray,
    images: int,
    nthreads: int,
    t_base: int = 0,
    row0: int = 0,
    col0: int = 0,
    dx_seg_len: int = 0,
    dx_seg_stride: int = 0,
    a_offset: int = 0,
    seg_len: int = 0,
    seg_stride: int = 0,
    dx_pixel_stride: int = 1,
) -> bool | None:
    """spmm_offsets_planes16 into dx and sddmm_offsets into dv in one call."""

def conv_grads_one_pass_planes16(
    *,
    t_ptr: numpy.ndarray,
    t_offsets: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    dy: numpy.ndarray,
    dy_image_stride: int,
    dx: numpy.ndarray,
    ldx: int,
    dx_image_stride: int,
    dx_len: int,
    grid_w: int,
    plane_h: int,
    plane_w: int,
    batch: int,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    lda: int,
    x: numpy.ndarray,
    x_image_stride: int,
    len: int,
    dv: numpy.ndarray,
    images: int,
    nthreads: int,
    t_base: int = 0,
    row0: int = 0,
    col0: int = 0,
    dx_seg_len: int = 0,
    dx_seg_stride: int = 0,
    a_offset: int = 0,
    seg_len: int = 0,
    seg_stride: int = 0,
    dx_pixel_stride: int = 1,
) -> bool:
    """Whether conv_grads_offsets_planes16 with these arguments loads each window of dy once
    for both gradients."""

def conv_grads_offsets_merge(
    *,
    t_ptr: numpy.ndarray,
    t_offsets: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    dy: numpy.ndarray,
    dy_image_stride: int,
    dx: numpy.ndarray,
    dx_image_stride: int,
    dx_len: int,
    merge: ConvInputLayout,
    ptr: numpy.ndarray,
    offsets: numpy.ndarray,
    lda: int,
    x: numpy.ndarray,
    x_image_stride: int,
    len: int,
    dv: numpy.ndarray,
    images: int,
    nthreads: int,
    t_base: int = 0,
    dx_seg_len: int = 0,
    dx_seg_stride: int = 0,
    a_offset: int = 0,
    seg_len: int = 0,
    seg_stride: int = 0,
    pack: ConvInputLayout | None = None,
    pack_grid: ConvOutputLayout | None = None,
    check_finite: bool = False,
) -> bool | None:
    """spmm_offsets_merge into dx and sddmm_offsets into dv in one call."""

# -- conv layout changes ------------------------------------------------------------------
def conv_pack_input(
    *,
    x: numpy.ndarray,
    packed: numpy.ndarray,
    layout: ConvInputLayout,
    nthreads: int,
    check_finite: bool = False,
) -> bool | None:
    """NCHW x -> its phase planes; with check_finite, whether x is all finite (else None)."""

def conv_unpack_grad_input(
    *, x: numpy.ndarray, packed: numpy.ndarray, layout: ConvInputLayout, nthreads: int
) -> None:
    """Phase planes (an input gradient) -> NCHW x, the padding dropped."""

def conv_pack_grad_output(
    *,
    y: numpy.ndarray,
    grid: numpy.ndarray | None,
    channel_sums: numpy.ndarray | None,
    layout: ConvOutputLayout,
    nthreads: int,
) -> None:
    """NCHW y -> its bordered grid (grid None: none), and its channel sums if given."""

# -- direct convolutions ------------------------------------------------------------------
def conv_direct_spmm(
    *,
    ptr: numpy.ndarray,
    plane: numpy.ndarray,
    dy: numpy.ndarray,
    slot: numpy.ndarray,
    shift_w: numpy.ndarray,
    values: numpy.ndarray,
    pos: numpy.ndarray | None,
    scratch: numpy.ndarray | None,
    src: numpy.ndarray,
    src_image_stride: int,
    sh: int,
    sw: int,
    out: numpy.ndarray,
    oh: int,
    ow: int,
    bias: numpy.ndarray | None,
    images: int,
    nthreads: int,
) -> None:
    """A stride-1 convolution on NCHW sh x sw planes of src into oh x ow planes of out."""

def conv_direct_sddmm(
    *,
    ptr: numpy.ndarray,
    plane: numpy.ndarray,
    dy: numpy.ndarray,
    slot: numpy.ndarray,
    shift_w: numpy.ndarray,
    grad: numpy.ndarray,
    oh: int,
    ow: int,
    src: numpy.ndarray,
    src_image_stride: int,
    sh: int,
    sw: int,
    images: int,
    out: numpy.ndarray,
    nthreads: int,
) -> None:
    """The values' gradient of conv_direct_spmm: out[j] = sum over images and pixels."""

# -- subsampling --------------------------------------------------------------------------
def subsample(
    *,
    src: numpy.ndarray,
    dst: numpy.ndarray,
    planes: int,
    h: int,
    w: int,
    sh: int,
    sw: int,
    nthreads: int,
    grad: bool = False,
) -> None:
    """dst = src[:, :, ::sh, ::sw] of planes h x w; grad: its gradient (zeros elsewhere)."""

# -- index formats ------------------------------------------------------------------------
def validate_csr(*, ptr: numpy.ndarray, idx: numpy.ndarray, rows: int, cols: int) -> None:
    """ValueError unless ptr / idx are a valid rows x cols CSR index (sorted, in range)."""

def csr_transpose(
    *,
    ptr: numpy.ndarray,
    idx: numpy.ndarray,
    cols: int,
    tptr: numpy.ndarray,
    tidx: numpy.ndarray,
    pos: numpy.ndarray,
) -> None:
    """The transposed index (tptr, tidx) of a validated CSR index, pos its CSR positions."""

# -- run time -----------------------------------------------------------------------------
def get_isa() -> str:
    """The ISA whose kernels run (scalar, avx2, avx512 or avx512_bf16)."""

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
