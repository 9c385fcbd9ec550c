"""Files of ``sparsetrain train``: the checkpoint folder, atomic checkpoint writes, and reading
a checkpoint (--resume) or starting weights (--init) with every failure as one line."""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import tempfile
import zipfile

import torch

from . import CLIError
from .checkpoint_checks import (
    check_checkpoint,
    check_fields,
    check_model_state,
    is_int,
    one_of,
    show,
)
from .messages import error_reason
from .train_settings import DEFAULTS, FORMAT, FORMAT_VERSION, SAVED_ARGS


def out_dir(args: argparse.Namespace, ckpt_path: pathlib.Path | None) -> pathlib.Path:
    """The checkpoint folder, checked (nothing is written yet)."""
    if args.out is not None:
        out = pathlib.Path(args.out)
    elif ckpt_path is not None:
        out = ckpt_path.parent
    else:
        out = pathlib.Path(DEFAULTS["out"])
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a folder")
    if ckpt_path is None and (out / "last.pt").exists() and not args.overwrite:
        raise CLIError(
            f"{out / 'last.pt'} exists: pass --resume {out / 'last.pt'} to "
            f"continue that run, --overwrite to start over, or another --out"
        )
    if out.is_dir() and not os.access(out, os.W_OK):
        raise CLIError(f"--out {out}: the folder is not writable")
    return out


def make_out_dir(out: pathlib.Path, fresh: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        if fresh:  # --overwrite: no best.pt of the old run next to the new run's
            (out / "best.pt").unlink(missing_ok=True)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot create the folder ({e.strerror})") from None


def serialize(obj: object) -> bytes:
    """What torch.save writes for ``obj``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_write(path: pathlib.Path, blob: bytes) -> None:
    """Write a temporary file next to ``path``, flush it to disk, then rename it over
    ``path``: a crash at any moment leaves either the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CLIError(f"cannot write checkpoint {path} ({e.strerror or e})") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        try:
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass


def checkpoint_path(text: str) -> pathlib.Path:
    """--resume's file: the path, or last.pt in the folder it names."""
    p = pathlib.Path(text)
    if p.is_dir():
        p = p / "last.pt"
    if not p.exists():
        raise CLIError(f"--resume {text}: no such checkpoint")
    return p


def torch_load(path: pathlib.Path, what: str) -> object:
    """torch.load with weights_only=True (a checkpoint runs no code); failures are one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CLIError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"{what} {path}: is a folder, expected a file") from None
    except Exception as e:  # noqa: BLE001  (truncated zip, garbage, foreign pickles)
        if "Unsupported global" in str(e):
            reason = (
                "it holds Python objects besides tensors, such as a whole pickled model; "
                "save model.state_dict() instead"
            )
        elif not zipfile.is_zipfile(path):
            reason = "not a file written by torch.save, or truncated"
        else:
            reason = f"damaged: {error_reason(e)}"
        raise CLIError(f"{what} {path}: cannot read it ({reason})") from None


def read_checkpoint(path: pathlib.Path) -> dict:
    obj = torch_load(path, "--resume")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CLIError(
            f"--resume {path}: not a checkpoint of sparsetrain train (to start "
            f"from other weights use --init)"
        )
    missing = [k for k in ("model", "optimizer", "epoch", "args") if k not in obj]
    if not missing:
        settings = obj["args"] if isinstance(obj["args"], dict) else {}
        missing = [f"args.{k}" for k in SAVED_ARGS if k not in settings]
    if missing:
        raise CLIError(f"--resume {path}: damaged checkpoint (no {', '.join(missing[:3])})")
    version = obj.get("format_version")
    if not is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise CLIError(
            f"--resume {path}: format_version {show(version)} is not one this "
            f"sparsetrain reads (1 to {FORMAT_VERSION}); written by sparsetrain "
            f"{show(obj.get('sparsetrain_version'))}"
        )
    check_checkpoint(obj, f"--resume {path}")
    return obj


def read_init(text: str) -> tuple[dict, dict | None]:
    """(state_dict, checkpoint or None) from --init: a checkpoint of this command, a
    state_dict, or a dict holding one under 'state_dict' / 'model_state_dict' / 'model'."""
    path = pathlib.Path(text)
    if not path.exists():
        raise CLIError(f"--init {text}: no such file")
    obj = torch_load(path, "--init")
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        # Of such a checkpoint --init uses the model state and args.model (the architecture).
        from ..models import MODELS

        check_model_state(obj.get("model"), f"--init {text}")
        saved = obj.get("args")
        if not isinstance(saved, dict):
            raise CLIError(
                f"--init {text}: damaged checkpoint: args is {show(saved)}, expected a dict"
            )
        check_fields(
            saved,
            {"model": one_of(*sorted(MODELS))},
            "args.",
            f"--init {text}",
            optional=("model",),
        )
        return obj["model"], obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise CLIError(
            f"--init {text}: not a state_dict (expected a dict of tensors, as "
            f"torch.save(model.state_dict(), path) writes)"
        )
    if all(k.startswith("module.") for k in obj):  # saved from DistributedDataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj, None
