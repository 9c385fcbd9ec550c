"""Data sets for ``sparsetrain train``: a folder of class subfolders of images, or an ``.npz``
with ``x`` (images) and ``y`` (integer labels). Everything is read into memory once; images
stay uint8 until a batch is taken (``Dataset.batch`` gives float32 in [0, 1])."""
from __future__ import annotations

import os
import pathlib
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

from . import CLIError

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


@dataclass
class Dataset:
    x: torch.Tensor      # (N, C, H, W), uint8 (scaled to [0, 1] per batch) or float32
    y: torch.Tensor      # (N,) int64
    classes: list        # class names; label i is classes[i]
    source: str          # what was read, for messages

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


def load_dataset(path, *, image_size: int | None = None, channels: int | None = None,
                 say=print) -> Dataset:
    """Read ``path`` (a folder of class subfolders, or an .npz). ``image_size`` resizes to
    N x N; ``channels`` (1 or 3) converts; else both are taken from the data."""
    p = pathlib.Path(path)
    if not p.exists():
        raise CLIError(f"{path}: no such file or folder")
    if p.is_dir():
        return _load_folder(p, image_size, channels, say)
    if p.suffix.lower() == ".npz":
        return _load_npz(p, image_size, channels)
    raise CLIError(f"{path}: expected a folder of class subfolders of images or an .npz file "
                   f"with arrays x and y")


def split(y: torch.Tensor, val_fraction: float, seed: int):
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
        raise CLIError("reading an image folder needs Pillow: pip install sparsetrain[cli] "
                       "(or pip install Pillow)") from None
    return Image


def _image_files(folder: pathlib.Path, extensions: set) -> tuple:
    """(image files, number of other files) under ``folder``, sorted, hidden entries skipped."""
    images, others = [], 0
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in extensions:
                images.append(pathlib.Path(root) / name)
            else:
                others += 1
    return images, others


def _load_folder(folder: pathlib.Path, image_size, channels, say) -> Dataset:
    Image = _pillow()
    try:
        class_dirs = sorted(d for d in folder.iterdir()
                            if d.is_dir() and not d.name.startswith("."))
    except OSError as e:
        raise CLIError(f"{folder}: cannot list the folder ({e.strerror})") from None
    if not class_dirs:
        raise CLIError(f"{folder}: no class subfolders (expected one subfolder of images per "
                       f"class, or an .npz file)")
    extensions = {e.lower() for e in Image.registered_extensions()}
    files, labels, skipped = [], [], 0
    for label, d in enumerate(class_dirs):
        found, others = _image_files(d, extensions)
        if not found:
            raise CLIError(f"{d}: no images in class folder '{d.name}'")
        files += found
        labels += [label] * len(found)
        skipped += others
    if len(class_dirs) < 2:
        raise CLIError(f"{folder}: found only one class ('{class_dirs[0].name}'); training a "
                       f"classifier needs at least 2 class subfolders")
    # First pass: headers only (size, mode), no decoding.
    sizes, gray = [], True
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(im.size)  # (W, H)
                gray = gray and im.mode in _GRAY_MODES
        except Exception as e:  # noqa: BLE001  (any failure to read names the file)
            raise CLIError(f"{f}: cannot read image ({_reason(e)})") from None
    c = channels or (1 if gray else 3)
    if image_size is not None:
        w = h = int(image_size)
    elif len(set(sizes)) == 1:
        w, h = sizes[0]
    else:
        (w0, h0), i = sizes[0], next(i for i, s in enumerate(sizes) if s != sizes[0])
        raise CLIError(f"images have different sizes ({files[0]} is {w0}x{h0}, {files[i]} is "
                       f"{sizes[i][0]}x{sizes[i][1]}); pass --image-size N to resize all to NxN")
    say(f"reading {len(files)} images from {folder} ({len(class_dirs)} classes"
        + (f"; {skipped} other files skipped" if skipped else "") + ")")
    x = np.empty((len(files), c, h, w), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("L" if c == 1 else "RGB")
                if im.size != (w, h):
                    im = im.resize((w, h), getattr(Image, "Resampling", Image).BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except Exception as e:  # noqa: BLE001
            raise CLIError(f"{f}: cannot read image ({_reason(e)})") from None
        x[i] = a[None] if c == 1 else a.transpose(2, 0, 1)
    return Dataset(torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64),
                   [d.name for d in class_dirs], str(folder))


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
        raise CLIError(f"{path}: is a single array, expected an .npz archive with arrays x and y "
                       f"(np.savez(path, x=images, y=labels))")
    with archive:
        for key in ("x", "y"):
            if key not in archive.files:
                has = ", ".join(archive.files) or "nothing"
                raise CLIError(f"{path}: no array '{key}' (has: {has}); expected x (images) and "
                               f"y (integer labels)")
        try:
            x, y = archive["x"], archive["y"]
            names = archive["classes"] if "classes" in archive.files else None
        except Exception as e:  # noqa: BLE001  (a damaged member, an object array)
            raise CLIError(f"{path}: cannot read its arrays ({_reason(e)})") from None

    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer)
                               or np.issubdtype(x.dtype, np.floating)):
        raise CLIError(f"{path}: x must hold integer or float pixel values, got dtype "
                       f"{x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[3] <= 4 < x.shape[1]:  # (N, H, W, C)
            x = x.transpose(0, 3, 1, 2)
    else:
        raise CLIError(f"{path}: x must be images (N, H, W), (N, C, H, W) or (N, H, W, C), got "
                       f"shape {x.shape}")
    n = x.shape[0]
    if n == 0 or min(x.shape[1:]) == 0:
        raise CLIError(f"{path}: x holds no images (shape {x.shape})")
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
        raise CLIError(f"{path}: y has negative labels (e.g. {int(y[y < 0][0])}); labels are "
                       f"0, 1, ..., classes - 1")
    y = torch.from_numpy(y.astype(np.int64))
    num_classes = int(y.max()) + 1
    if len(torch.unique(y)) < 2:
        raise CLIError(f"{path}: all labels are {int(y[0])}; training a classifier needs at "
                       f"least 2 classes")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int(np.nonzero(~np.isfinite(x.reshape(n, -1)).all(1))[0][0])
        raise CLIError(f"{path}: x contains NaN or infinite values (first in image {bad})")

    if names is not None:
        names = [str(s) for s in np.asarray(names).reshape(-1).tolist()]
        if len(names) < num_classes:
            raise CLIError(f"{path}: 'classes' names {len(names)} classes but y has labels up to "
                           f"{num_classes - 1}")
        classes = names
    else:
        classes = [str(i) for i in range(num_classes)]

    if x.dtype == np.uint8:
        xt = torch.from_numpy(np.ascontiguousarray(x))
    else:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if channels is not None and channels != xt.shape[1]:
        if xt.shape[1] == 1 and channels == 3:
            xt = xt.expand(-1, 3, -1, -1).contiguous()
        elif xt.shape[1] == 3 and channels == 1:
            lum = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            gray = (xt.to(torch.float32) * lum).sum(1, keepdim=True)
            xt = gray.round_().clamp_(0, 255).to(torch.uint8) if xt.dtype == torch.uint8 else gray
        else:
            raise CLIError(f"{path}: images have {xt.shape[1]} channels; --channels {channels} "
                           f"can only convert between 1 and 3")
    if image_size is not None and tuple(xt.shape[2:]) != (image_size, image_size):
        dtype = xt.dtype
        resized = torch.nn.functional.interpolate(xt.to(torch.float32), size=(image_size,
                                                  image_size), mode="bilinear",
                                                  align_corners=False, antialias=True)
        xt = resized.round_().clamp_(0, 255).to(torch.uint8) if dtype == torch.uint8 else resized
    return Dataset(xt, y, classes, str(path))
