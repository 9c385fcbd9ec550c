"""The ``sparsetrain`` command: ``demo``, ``bench`` and ``train``.

Mistakes a person can make (a missing path, an unreadable image, a bad option value) end
with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Callable

from torch import nn


class CLIError(Exception):
    """A problem with what the user asked for; printed as one line."""


def checked(
    convert: Callable[[str], object], valid: Callable[[object], bool], expected: str
) -> Callable[[str], object]:
    """An argparse ``type``: ``convert(text)``, refused with "expected <expected>" unless
    ``valid(value)``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = checked(int, lambda v: v >= 1, "a positive integer")
fraction = checked(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def conv_strategies() -> tuple:
    """The ``strategy`` values SparseConv2d accepts (nn/conv_plans.py's CHOICES), so the
    option follows the layer when it learns a new one."""
    from ..nn.conv_plans import CHOICES

    return CHOICES


def add_strategy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy",
        choices=conv_strategies(),
        default="auto",
        help="kernel layout of every sparse convolution (SparseConv2d "
        "strategy), set after sparsify has chosen which layers become "
        "sparse (default: %(default)s)",
    )


def set_conv_strategy(model: nn.Module, strategy: str) -> list[str]:
    """``strategy`` on every SparseConv2d in ``model`` that can run it, ``"auto"`` on the
    others (the direct kernels are stride-1 only); returns the names of those others. (The
    value was checked by argparse against conv_strategies(); the layer reads it on every
    forward.)"""
    from ..nn.conv import SparseConv2d

    others = []
    for name, m in model.named_modules():
        if isinstance(m, SparseConv2d):
            if strategy in m.strategies:
                m.strategy = strategy
            else:
                m.strategy = "auto"
                others.append(name or type(m).__name__)
    return others


def strategy_note(strategy: str, others: list[str]) -> str:
    """The line saying which layers set_conv_strategy gave "auto" instead of ``strategy``."""
    return (
        f"--strategy {strategy}: {len(others)} strided convolution"
        f"{'s' if len(others) != 1 else ''} cannot run it (the {strategy} kernels are "
        f"stride-1 only) and use{'s' if len(others) == 1 else ''} auto: "
        f"{', '.join(others)}"
    )


class _Parser(argparse.ArgumentParser):
    """Option errors as one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import bench, demo, train

    parser = _Parser(
        prog="sparsetrain", description="Fast training of unstructured-sparse networks on CPUs."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,train}", parser_class=_Parser)
    for module in (demo, bench, train):
        module.add_parser(sub).add_argument(
            "--system-malloc",
            action="store_true",
            help="leave glibc malloc as it is: return freed memory to the system after every "
            "step instead of keeping it for the next (sparsetrain.keep_freed_memory)",
        )
    return parser


def _version() -> str:
    from .. import __version__

    return f"sparsetrain {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # option errors: one line, SystemExit(2)
    if args.command is None:
        parser.print_help()
        return 2
    if not args.system_malloc:
        from .._runtime import keep_freed_memory

        keep_freed_memory()  # dense and sparse runs alike; see its docstring
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"sparsetrain {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sparsetrain {args.command}: interrupted", file=sys.stderr)
        return 130
