"""Data sets for ``sparsetrain train``: a folder of class subfolders of images, or an ``.npz``
with ``x`` (images) and ``y`` (integer labels). Everything is read into memory once; 8-bit
images stay uint8 until a batch is taken (``Dataset.batch`` gives float32 in [0, 1]).

Pixels: 8-bit values are divided by 255 and 16-bit ones (uint16, Pillow's "I;16" and "I"
modes) by 65535; float pixels are taken as they are, NaN or infinite ones are an error.

Labels are 0, 1, ..., K - 1 with every class used: a gap ({0, 1000}) is an error naming the
unused labels, not a thousand empty classes.

Symbolic links in an image folder are followed, and every real folder and image is read
once: a link back into a folder already read (a loop such as ``cat/up -> ..``) and a second
path to an image of the same class are skipped; a folder or image reached from two classes
(``dog -> cat``, ``cat/more -> ../dog``, a hard link) is an error, since it would have two
labels and land in training and validation alike."""

from __future__ import annotations

import os
import pathlib
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import CLIError

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
# One-channel modes deeper than 8 bits: read as numbers, not through convert("L"), which
# clips them to 255. "I" (32-bit) is what older Pillow makes of a 16-bit PNG.
_16BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_DEEP_MODES = _16BIT_MODES | {"F"}


@dataclass
class Dataset:
    x: torch.Tensor  # (N, C, H, W), uint8 (scaled to [0, 1] per batch) or float32 (as is)
    y: torch.Tensor  # (N,) int64
    classes: list  # class names; label i is classes[i]
    source: str  # what was read, for messages

    def __len__(self) -> int:
        return int(self.y.numel())

    @property
    def channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def size(self) -> tuple:
        return int(self.x.shape[2]), int(self.x.shape[3])

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """float32 images (len(idx), C, H, W)."""
        x = self.x[idx]
        if x.dtype == torch.uint8:
            return x.to(torch.float32).div_(255.0)
        return x


def load_dataset(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    say: Callable[..., None] = print,
) -> Dataset:
    """Read ``path`` (a folder of class subfolders, or an .npz). ``image_size`` resizes to
    N x N; ``channels`` (1 or 3) converts; else both are taken from the data."""
    p = pathlib.Path(path)
    if not p.exists():
        raise CLIError(f"{path}: no such file or folder")
    if p.is_dir():
        return _load_folder(p, image_size, channels, say)
    if p.suffix.lower() == ".npz":
        return _load_npz(p, image_size, channels)
    raise CLIError(
        f"{path}: expected a folder of class subfolders of images or an .npz file "
        f"with arrays x and y"
    )


def split(y: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): about ``val_fraction`` of every class, seeded."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = int(round(val_fraction * idx.numel()))
        val.append(idx[:k])
        train.append(idx[k:])
    train, val = torch.cat(train), torch.cat(val)
    if val_fraction > 0 and val.numel() == 0 and train.numel() >= 2:
        val, train = train[:1], train[1:]  # tiny data set: still hold out one image
    return train.sort().values, val.sort().values


# -- image folders ----------------------------------------------------------------------------


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise CLIError(
            "reading an image folder needs Pillow: pip install sparsetrain[cli] "
            "(or pip install Pillow)"
        ) from None
    return Image


def _identity(path) -> tuple | None:
    """(device, inode) of what ``path`` leads to, links followed; None if that fails."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Walk:
    """Walks the class folders of one data set, links followed, every real folder and
    image taken once (see the module docstring for the rule)."""

    def __init__(self, root: pathlib.Path, extensions: set):
        self.extensions = extensions
        # identity -> (class name, the path it was first reached by). The data folder and
        # the folders above it belong to no class: a link to one of them is a loop (it
        # would walk every class again).
        self.dirs = {}
        real = pathlib.Path(os.path.realpath(root))
        for d in (real, *real.parents):
            key = _identity(d)
            if key is not None:
                self.dirs[key] = (None, d)
        self.files = {}  # identity -> (class name, path)
        self.repeats = 0  # folders and images reached a second time, skipped

    def images(self, class_dir: pathlib.Path) -> tuple:
        """(image files, number of other files) under ``class_dir``, in sorted depth-first
        order (os.walk's), hidden entries skipped."""
        name = class_dir.name
        images, others = [], 0
        stack = [class_dir]
        while stack:
            d = stack.pop()
            key = _identity(d)
            if key is not None and key in self.dirs:
                owner, first = self.dirs[key]
                if d == class_dir:
                    where = (
                        f"was already read as {first} in class '{owner}'"
                        if owner is not None
                        else "leads back to the data folder"
                    )
                    raise CLIError(
                        f"{d}: class folder '{name}' {where} (a symbolic link?); "
                        f"every class needs its own folder"
                    )
                if owner is not None and owner != name:
                    raise CLIError(
                        f"{d}: reached from class '{name}' but already read as "
                        f"{first} in class '{owner}' (a symbolic link?); an "
                        f"image can have one class only"
                    )
                self.repeats += 1  # a loop, or a second link to a folder of this class
                continue
            if key is not None:
                self.dirs[key] = (name, d)
            try:
                entries = sorted(
                    (e for e in os.scandir(d) if not e.name.startswith(".")), key=lambda e: e.name
                )
            except OSError as e:
                raise CLIError(f"{d}: cannot list the folder ({e.strerror})") from None
            subdirs = []
            for e in entries:
                path = pathlib.Path(d) / e.name
                if e.is_dir():  # follows links
                    subdirs.append(path)
                elif os.path.splitext(e.name)[1].lower() not in self.extensions:
                    others += 1
                elif self._first_time(path, name):
                    images.append(path)  # a broken link too: reading it names the file
            stack += reversed(subdirs)
        return images, others

    def _first_time(self, path: pathlib.Path, name: str) -> bool:
        key = _identity(path)
        if key is None:
            return True
        if key in self.files:
            owner, first = self.files[key]
            if owner != name:
                raise CLIError(
                    f"{path}: the same image as {first} of class '{owner}' (a "
                    f"symbolic or hard link?); an image can have one class only"
                )
            self.repeats += 1
            return False
        self.files[key] = (name, path)
        return True


def _load_folder(folder: pathlib.Path, image_size, channels, say) -> Dataset:
    Image = _pillow()
    try:
        class_dirs = sorted(
            d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
    except OSError as e:
        raise CLIError(f"{folder}: cannot list the folder ({e.strerror})") from None
    if not class_dirs:
        raise CLIError(
            f"{folder}: no class subfolders (expected one subfolder of images per "
            f"class, or an .npz file)"
        )
    walk = _Walk(folder, {e.lower() for e in Image.registered_extensions()})
    files, labels, skipped = [], [], 0
    for label, d in enumerate(class_dirs):
        found, others = walk.images(d)
        if not found:
            raise CLIError(f"{d}: no images in class folder '{d.name}'")
        files += found
        labels += [label] * len(found)
        skipped += others
    if len(class_dirs) < 2:
        raise CLIError(
            f"{folder}: found only one class ('{class_dirs[0].name}'); training a "
            f"classifier needs at least 2 class subfolders"
        )
    # First pass: headers only (size, mode), no decoding.
    sizes, modes = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(im.size)  # (W, H)
                modes.append(im.mode)
        except Exception as e:  # noqa: BLE001  (any failure to read names the file)
            raise CLIError(f"{f}: cannot read image ({_reason(e)})") from None
    c = channels or (1 if all(m in _GRAY_MODES for m in modes) else 3)
    if image_size is not None:
        w = h = int(image_size)
    elif len(set(sizes)) == 1:
        w, h = sizes[0]
    else:
        (w0, h0), i = sizes[0], next(i for i, s in enumerate(sizes) if s != sizes[0])
        raise CLIError(
            f"images have different sizes ({files[0]} is {w0}x{h0}, {files[i]} is "
            f"{sizes[i][0]}x{sizes[i][1]}); pass --image-size N to resize all to NxN"
        )
    extra = [f"{skipped} other files skipped"] if skipped else []
    if walk.repeats:
        extra.append(f"{walk.repeats} folders or images reached again through links skipped")
    say(
        f"reading {len(files)} images from {folder} ({len(class_dirs)} classes"
        + "".join(f"; {e}" for e in extra)
        + ")"
    )
    # 8-bit images stay uint8 (a quarter of the memory); any deeper one makes all float32.
    deep = any(m in _DEEP_MODES for m in modes)
    x = np.empty((len(files), c, h, w), dtype=np.float32 if deep else np.uint8)
    resample = getattr(Image, "Resampling", Image).BILINEAR
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                if im.mode in _DEEP_MODES:
                    a = _deep_pixels(Image, im, f, (w, h), resample)
                else:
                    im = im.convert("L" if c == 1 else "RGB")
                    if im.size != (w, h):
                        im = im.resize((w, h), resample)
                    a = np.asarray(im, dtype=np.uint8)
                    if deep:
                        a = a.astype(np.float32) / 255.0
        except CLIError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CLIError(f"{f}: cannot read image ({_reason(e)})") from None
        x[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # gray into 3 channels: repeated
    return Dataset(
        torch.from_numpy(x),
        torch.tensor(labels, dtype=torch.int64),
        [d.name for d in class_dirs],
        str(folder),
    )


def _deep_pixels(Image, im, path, size, resample) -> np.ndarray:
    """A one-channel image deeper than 8 bits as float32 (H, W): 16-bit values / 65535,
    float ones as they are."""
    a = np.asarray(im).astype(np.float32)
    if im.mode in _16BIT_MODES:
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 65535:  # a 32-bit "I" image beyond 16 bits: no scale to assume
            raise CLIError(
                f"{path}: 32-bit integer pixels from {lo:g} to {hi:g}; expected "
                f"8-bit, 16-bit (0..65535) or float images"
            )
        a /= 65535.0
    elif not np.isfinite(a).all():
        raise CLIError(f"{path}: the image has NaN or infinite pixel values")
    if a.shape[::-1] != size:
        a = np.asarray(Image.fromarray(a).resize(size, resample))  # float32 -> mode "F"
    return a


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# -- .npz -------------------------------------------------------------------------------------


def _load_npz(path: pathlib.Path, image_size, channels) -> Dataset:
    if not zipfile.is_zipfile(path):
        raise CLIError(f"{path}: not a valid .npz file (not a zip archive)")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise CLIError(f"{path}: cannot read .npz ({_reason(e)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CLIError(
            f"{path}: is a single array, expected an .npz archive with arrays x and y "
            f"(np.savez(path, x=images, y=labels))"
        )
    with archive:
        for key in ("x", "y"):
            if key not in archive.files:
                has = ", ".join(archive.files) or "nothing"
                raise CLIError(
                    f"{path}: no array '{key}' (has: {has}); expected x (images) and "
                    f"y (integer labels)"
                )
        try:
            x, y = archive["x"], archive["y"]
            names = archive["classes"] if "classes" in archive.files else None
        except Exception as e:  # noqa: BLE001  (a damaged member, an object array)
            raise CLIError(f"{path}: cannot read its arrays ({_reason(e)})") from None

    if x.dtype == bool or not (
        np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    ):
        raise CLIError(f"{path}: x must hold integer or float pixel values, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[3] <= 4 < x.shape[1]:  # (N, H, W, C)
            x = x.transpose(0, 3, 1, 2)
    else:
        raise CLIError(
            f"{path}: x must be images (N, H, W), (N, C, H, W) or (N, H, W, C), got shape {x.shape}"
        )
    n = x.shape[0]
    if n == 0 or min(x.shape[1:]) == 0:
        raise CLIError(f"{path}: x holds no images (shape {x.shape})")
    y, classes = _labels(path, y, n, names)
    xt = torch.from_numpy(_pixels(path, x))
    if channels is not None and channels != xt.shape[1]:
        if xt.shape[1] == 1 and channels == 3:
            xt = xt.expand(-1, 3, -1, -1).contiguous()
        elif xt.shape[1] == 3 and channels == 1:
            lum = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            gray = (xt.to(torch.float32) * lum).sum(1, keepdim=True)
            xt = gray.round_().clamp_(0, 255).to(torch.uint8) if xt.dtype == torch.uint8 else gray
        else:
            raise CLIError(
                f"{path}: images have {xt.shape[1]} channels; --channels {channels} "
                f"can only convert between 1 and 3"
            )
    if image_size is not None and tuple(xt.shape[2:]) != (image_size, image_size):
        dtype = xt.dtype
        resized = torch.nn.functional.interpolate(
            xt.to(torch.float32),
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        xt = resized.round_().clamp_(0, 255).to(torch.uint8) if dtype == torch.uint8 else resized
    return Dataset(xt, y, classes, str(path))


def _labels(path, y: np.ndarray, n: int, names) -> tuple:
    """(int64 labels, class names): y must be one label per image, integers (floats that
    are whole numbers too), 0 .. K - 1 with every class used."""
    if y.ndim != 1:
        raise CLIError(f"{path}: y must be one label per image, shape (N,), got shape {y.shape}")
    if len(y) != n:
        raise CLIError(f"{path}: x has {n} images but y has {len(y)} labels")
    if np.issubdtype(y.dtype, np.floating):
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise CLIError(f"{path}: y must hold integer class labels, got non-integer values")
    elif not np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        raise CLIError(f"{path}: y must hold integer class labels, got dtype {y.dtype}")
    if (y < 0).any():
        raise CLIError(
            f"{path}: y has negative labels (e.g. {int(y[y < 0][0])}); labels are "
            f"0, 1, ..., classes - 1"
        )
    # Everything below works on the labels present, never on range(max label): one label
    # of 2**40 must be an error, not 2**40 class names.
    used = [int(v) for v in np.unique(y).tolist()]
    if names is not None:
        names = [str(s) for s in np.asarray(names).reshape(-1).tolist()]
        if used[-1] >= len(names):
            raise CLIError(
                f"{path}: 'classes' names {len(names)} classes but y has label {_big(used[-1])}"
            )
    k = len(names) if names is not None else used[-1] + 1
    if len(used) == 1 and k == 1:
        raise CLIError(
            f"{path}: all labels are {used[0]}; training a classifier needs at least 2 classes"
        )
    if len(used) < k:
        if used[-1] >= n:  # n images cannot fill more than n classes
            detail = f"has label {_big(used[-1])} with only {n} images"
        else:
            missing = _first_missing(used, k)
            detail = (
                "has no images of label "
                + ", ".join(map(str, missing))
                + (", ..." if k - len(used) > len(missing) else "")
                + (f" ({', '.join(repr(names[m]) for m in missing)})" if names else "")
                + f": {k - len(used)} of the labels 0..{k - 1} unused"
            )
        raise CLIError(
            f"{path}: labels must be 0, 1, ..., K - 1 with every class used, but y "
            f"{detail} (renumber them, e.g. np.unique(y, return_inverse=True)[1])"
        )
    return (
        torch.from_numpy(y.astype(np.int64)),
        names if names is not None else [str(i) for i in range(k)],
    )


def _big(v: int) -> str:
    return str(v) if v < 10**20 else f"{v:.3g}"  # a label of 1e300 in one short line


def _first_missing(used: list, k: int, limit: int = 3) -> list:
    """Up to ``limit`` of the labels 0..k-1 absent from the sorted list ``used``."""
    missing, expect = [], 0
    for v in used + [k]:
        while expect < v and len(missing) < limit:
            missing.append(expect)
            expect += 1
        if len(missing) == limit:
            break
        expect = v + 1
    return missing


def _pixels(path, x: np.ndarray) -> np.ndarray:
    """x as uint8 (scaled per batch) or float32: uint16 divided by 65535, other integer
    types taken as 8-bit when their values fit 0..255, floats as they are."""
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype == np.uint16:
        xf = np.ascontiguousarray(x, dtype=np.float32)
        xf /= 65535.0
        return xf
    if np.issubdtype(x.dtype, np.integer):
        # int32 / int64 arrays are mostly 8-bit images built from Python ints; beyond
        # 0..255 their dtype says nothing about the scale, so guessing one is refused.
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise CLIError(
                f"{path}: x is {x.dtype} with pixels from {lo} to {hi}; integer "
                f"pixels are 8-bit (0..255, divided by 255) unless x is uint16 "
                f"(0..65535, divided by 65535); store floats to give your own scale"
            )
        return np.ascontiguousarray(x, dtype=np.uint8)
    with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, refused below
        xf = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(xf).all():
        bad = int(np.nonzero(~np.isfinite(xf.reshape(len(xf), -1)).all(1))[0][0])
        raise CLIError(
            f"{path}: x contains NaN or infinite values, or values beyond float32 "
            f"(first in image {bad})"
        )
    return xf
