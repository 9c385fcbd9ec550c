"""Exceptions and lists as parts of a one-line CLIError message."""

from __future__ import annotations

from collections.abc import Iterable


def error_reason(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).strip().splitlines() if s.strip()]
    text = lines[0] if lines else type(e).__name__
    if text.startswith("Error(s) in loading state_dict") and len(lines) > 1:
        text = lines[1]
    return text if len(text) <= 240 else text[:237] + "..."


def whole_message(e: BaseException, limit: int = 1000) -> str:
    """A layer's message in full, on one line (its lines joined): it names the layer and
    what is wrong, which error_reason's first line could cut off. The limit only guards against
    a message that prints a whole tensor."""
    text = " ".join(s.strip() for s in str(e).splitlines() if s.strip()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_list(names: Iterable[str], n: int = 5) -> str:
    """The first ``n`` names, and how many there are in all if more."""
    names = list(names)
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")
