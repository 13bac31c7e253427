"""What happens to clicks that cannot be used as given: one policy, named per entry point.

- `strict` (every command's default): the first problem raises InputError naming the file, the
  entry and the problem; the CLI prints that line and exits 2.
- `drop-outside` (the `--drop-outside` flag): strict, except that clicks outside the volume are
  dropped with a warning that lists each one.
- `lenient` (the grand-challenge container, which must not fail a job over its clicks): every bad
  entry is dropped, each drop logged (and recorded in `drops` for a JSON report); the good ones are used.

The rules are the same in every command:

| problem | strict | drop-outside | lenient |
| --- | --- | --- | --- |
| a click outside the volume (an index < 0 or >= the shape) | error | dropped, warning | dropped, warning |
| one voxel clicked as tumour and as background | error | error | background click dropped, warning |
| more than `budget` (10) clicks of a kind | error | error | first 10 kept, warning |
| a malformed entry (clickfile.py: bad name, 2 coordinates, NaN, ...) | error | error | entry dropped, warning |

Repeated clicks within one kind are kept as given everywhere: the official simulation repeats
boundary clicks on small lesions, so a repeat is legitimate input, not an error.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Sequence

from petclick.core.errors import InputError
from petclick.io.clickset import KINDS, Clicks

log = logging.getLogger(__name__)

#: Clicks of each kind the protocol uses (steps 0..10).
BUDGET = 10
#: Indices at or above this lie outside any volume (the bound used when no shape is known).
MAX_INDEX = 2 ** 31
#: Drops logged one per line per source; the rest are counted in one closing line.
MAX_LOGGED_DROPS = 25


class ClickPolicy(str, Enum):
    """strict | drop-outside | lenient (see the module docstring)."""

    STRICT = "strict"
    DROP_OUTSIDE = "drop-outside"
    LENIENT = "lenient"

    @classmethod
    def parse(cls, value: "ClickPolicy | str | None") -> "ClickPolicy":
        """A policy from its name (None: strict); an unknown name raises InputError."""
        if value is None:
            return cls.STRICT
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise InputError(None, f"unknown click policy {value!r}; use one of "
                                   f"{', '.join(p.value for p in cls)}") from None

    @classmethod
    def from_flags(cls, drop_outside: bool = False) -> "ClickPolicy":
        """The policy of a command line: `--drop-outside` given or not."""
        return policy_from_flags(drop_outside)


def policy_from_flags(drop_outside: bool = False, policy: "ClickPolicy | str | None" = None) -> ClickPolicy:
    """The policy of a command line: `--click-policy` when given, else `--drop-outside`, else strict."""
    if policy is not None:
        chosen = ClickPolicy.parse(policy)
        if drop_outside and chosen is ClickPolicy.STRICT:
            raise InputError("--drop-outside", "contradicts --click-policy strict")
        return chosen
    return ClickPolicy.DROP_OUTSIDE if drop_outside else ClickPolicy.STRICT


@dataclass(frozen=True)
class ClickDrop:
    """One dropped click-file entry: where it was, what it held and why it was dropped."""

    source: str
    entry: str
    click: list | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


class DropRecorder:
    """Applies a policy to the problems of one click source: raises what the policy forbids, records
    and logs what it drops. Use as a context manager so the count of unlogged drops is reported."""

    def __init__(self, source: str | Path | None, policy: ClickPolicy | str | None, drops: list | None = None):
        self.source = "clicks" if source is None else str(source)
        self.policy = ClickPolicy.parse(policy)
        self.drops = drops if drops is not None else []
        self.n = 0          # drops logged one per line (quiet ones are summarised by the caller)

    def __enter__(self) -> "DropRecorder":
        return self

    def __exit__(self, *exc) -> None:
        if self.n > MAX_LOGGED_DROPS:
            log.warning("%s: %d more click entries dropped (%d in all)", self.source, self.n - MAX_LOGGED_DROPS, self.n)

    def droppable(self, outside: bool) -> bool:
        return self.policy is ClickPolicy.LENIENT or (outside and self.policy is ClickPolicy.DROP_OUTSIDE)

    def problem(self, entry: str, reason: str, click=None, outside: bool = False, kept: str = "",
                bare: bool = False) -> None:
        """Raise InputError unless the policy drops this entry; then record and log the drop
        (`kept`: what is used instead, added to the warning; `bare`: the error is the reason alone)."""
        shown = "" if click is None else f" {_show(click)}"
        if not self.droppable(outside):
            raise InputError(self.source, reason if bare else f"{entry}{shown}: {reason}")
        self.record(entry, click, f"{reason}; {kept}" if kept else reason)

    def record(self, entry: str, click, reason: str, quiet: bool = False) -> None:
        """Record a drop; log it unless `quiet` (the caller then logs a summary)."""
        self.drops.append(ClickDrop(self.source, entry, _jsonable(click), reason))
        if quiet:
            return
        self.n += 1
        if self.n <= MAX_LOGGED_DROPS:
            shown = "" if click is None else f" {_show(click)}"
            log.warning("%s: dropped %s%s: %s", self.source, entry, shown, reason)


def _show(click) -> str:
    return str(list(click)) if isinstance(click, (list, tuple)) else repr(click)


def _jsonable(click):
    if isinstance(click, (list, tuple)) and all(isinstance(c, (int, float, str, bool)) or c is None for c in click):
        return list(click)
    return None if click is None else repr(click)[:80]


def _outside(point: Sequence[int], shape: Sequence[int] | None) -> bool:
    bounds = shape if shape is not None else (MAX_INDEX,) * 3
    return any(c < 0 or c >= s for c, s in zip(point, bounds))


def apply_click_policy(clicks: Clicks, shape: Sequence[int] | None, source: str | Path | None,
                       policy: ClickPolicy | str | None = ClickPolicy.STRICT, budget: int | None = BUDGET,
                       drops: list[ClickDrop] | None = None) -> Clicks:
    """Clicks checked against a volume of `shape` (None: only negative indices count as outside)
    and the per-kind `budget` (None: no limit) under `policy`; returns the clicks to use, in order.

    strict raises InputError naming `source` and the click; drop-outside drops clicks outside the
    volume with a warning listing each; lenient also drops the background copy of a voxel clicked
    as both kinds and keeps the first `budget` of each kind. Every drop is appended to `drops`.
    """
    shape = None if shape is None else tuple(int(s) for s in shape)[-3:]
    where = f"the volume of shape {shape}" if shape is not None else "the volume (negative index)"
    kept: dict[str, list] = {kind: [] for kind in KINDS}
    labels: dict[str, list[str]] = {kind: [] for kind in KINDS}
    with DropRecorder(source, policy, drops) as rec:
        outside: list[str] = []
        for kind in KINDS:
            for n, p in enumerate(getattr(clicks, kind)):
                label = clicks.label(kind, n)
                if _outside(p, shape):
                    if not rec.droppable(outside=True):
                        raise InputError(rec.source, f"click {label} {list(p)} lies outside {where}")
                    rec.record(label, p, f"{kind} click outside {where}", quiet=True)
                    outside.append(f"{label} {list(p)}")
                    continue
                kept[kind].append(tuple(p))
                labels[kind].append(label)
        if outside:
            log.warning("%s: %d click(s) outside %s dropped: %s", rec.source, len(outside), where, "; ".join(outside))
        tumour_voxels = dict(zip(reversed(kept["tumor"]), reversed(labels["tumor"])))  # first label wins
        background = list(zip(kept["background"], labels["background"]))
        kept["background"], labels["background"] = [], []
        for p, label in background:
            if p in tumour_voxels:
                rec.problem(label, f"background click on the voxel of tumour click {tumour_voxels[p]}", p)
                continue
            kept["background"].append(p)
            labels["background"].append(label)
        if budget is not None:
            for kind in KINDS:
                points = kept[kind]
                if len(points) > budget:
                    first_over = labels[kind][budget]
                    rec.problem(f"{first_over}..{labels[kind][-1]}", f"{len(points)} {kind} clicks exceed the budget "
                                f"of {budget} (first one over it: {first_over} {list(points[budget])})",
                                kept=f"the first {budget} are kept", bare=True)
                    del points[budget:], labels[kind][budget:]
    return Clicks(kept["tumor"], kept["background"], labels)
