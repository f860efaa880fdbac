"""Fitting untrusted text into a channel's limits: lengths, cuts and lists that say "more".

Shared by the channels' formats (:mod:`sluicegate.notify.channels`). Lengths are counted in
UTF-16 code units, never fewer than the characters a service counts; a cut text ends with
``…`` and a cut list says how many more items the review page holds. Escaping is each
channel's own, passed in as ``escape``: a text is escaped first and then cut, never inside an
entity the escape made.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from sluicegate.model import Verdict
from sluicegate.notify.view import DatasetLine, DecisionLine
from sluicegate.timefmt import when

__all__ = [
    "ELLIPSIS",
    "LINE_BREAKS",
    "ZWSP",
    "clip",
    "dataset_text",
    "decision_text",
    "more",
    "one_line",
    "pack",
    "units",
]

ELLIPSIS = "…"
ZWSP = "\u200b"
LINE_BREAKS = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")

Escape = Callable[[str], str]


def units(text: str) -> int:
    """Length in UTF-16 code units: never fewer than the characters Slack or Teams count."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int, escape: Escape) -> str:
    """``escape(text)`` in at most ``limit`` units, cut (never inside an entity) with ``…``."""
    out = escape(text)
    if units(out) <= limit:
        return out
    cut = min(len(text), limit)
    while cut > 0:
        out = escape(text[:cut]).rstrip() + ELLIPSIS
        size = units(out)
        if size <= limit:
            return out
        # Escaping may have grown the text several times over: shrink in proportion.
        cut = min(cut - 1, cut * (limit - 1) // size)
    return ELLIPSIS


def pack(lines: Sequence[str], limit: int, more_text: Callable[[int], str]) -> str:
    """Lines joined by newlines, as many as fit in ``limit`` with ``more_text(n_left)`` after."""
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        tail = units(more_text(len(lines) - i - 1)) + 1 if i < len(lines) - 1 else 0
        if used + units(line) + 1 + tail > limit:
            out.append(more_text(len(lines) - i))
            break
        out.append(line)
        used += units(line) + 1
    return "\n".join(out)


def more(noun: str) -> Callable[[int], str]:
    """What a cut list says in place of its last ``n`` items."""
    return lambda n: f"{ELLIPSIS} and {n} more {noun} on the review page"


def one_line(text: str) -> str:
    """``text`` with its line breaks (and the spaces around them) made single spaces."""
    return LINE_BREAKS.sub(" ", text).strip()


def dataset_text(d: DatasetLine, escape: Escape) -> str:
    """``namespace::name — pii (given by the pipeline)``, escaped and capped."""
    text = clip(d.qualified, 400, escape)
    if d.classifications:
        labels = ", ".join(f"{c.classification} ({c.source})" for c in d.classifications)
        text += f" — {clip(labels, 300, escape)}"
    return text


def decision_text(d: DecisionLine, escape: Escape) -> str:
    """``alice approved (2026-11-25 11:30 UTC, via slack): “comment”``, escaped and capped."""
    verb = "approved" if d.verdict == Verdict.APPROVE.value else "denied"
    text = f"{clip(d.reviewer, 100, escape)} {verb} ({when(d.decided_at)}, via {d.channel})"
    if d.comment:
        text += f": “{clip(d.comment, 500, escape)}”"
    return text
