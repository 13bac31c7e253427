"""One policy for clicks that do not fit a volume: outside it, over the budget, repeated.

Every entry point (predict, gc, interactive, bundle inference, validation, the interactive
session) passes its clicks through `apply_click_policy`, so the same input gives the same outcome
everywhere:

| policy | click outside the volume | more than `budget` of a kind | duplicate click |
| --- | --- | --- | --- |
| `strict` (default) | InputError naming the source and the click | InputError naming the first click over | kept (logged) |
| `drop-outside` | dropped, one warning listing each | InputError | kept (logged) |
| `lenient` | dropped, one warning listing each | the first `budget` kept, warning | kept (logged) |

Duplicates are kept because the official click rule itself repeats a click when a lesion has
fewer voxels than the budget asks for (petclick.clicks.simulate); with the `max` click encoding a
repeated click changes nothing, and it counts towards the budget like any other. Outside means
any index < 0 or >= the volume's size on its axis.
"""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Sequence

from petclick.core.errors import InputError
from petclick.io.clickfile import KINDS, Clicks

log = logging.getLogger(__name__)

#: Clicks per kind the challenge allows (autoPET IV: 10 tumour and 10 background clicks).
BUDGET = 10


class ClickPolicy(str, Enum):
    """How clicks outside the volume and over the budget are treated (see the module docstring)."""

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
            raise InputError("click policy", f"unknown policy {value!r}; use one of "
                                             f"{', '.join(p.value for p in cls)}") from None


def policy_from_flags(drop_outside: bool = False, policy: "ClickPolicy | str | None" = None) -> ClickPolicy:
    """The policy of a command line: `--click-policy` when given, else `--drop-outside`, else strict."""
    if policy is not None:
        chosen = ClickPolicy.parse(policy)
        if drop_outside and chosen is ClickPolicy.STRICT:
            raise InputError("--drop-outside", "contradicts --click-policy strict")
        return chosen
    return ClickPolicy.DROP_OUTSIDE if drop_outside else ClickPolicy.STRICT


def _outside(point: Sequence[int], shape: Sequence[int]) -> bool:
    return any(c < 0 or c >= s for c, s in zip(point, shape))


def apply_click_policy(clicks: Clicks, shape: Sequence[int] | None, source: str | Path | None,
                       policy: ClickPolicy | str | None = ClickPolicy.STRICT, budget: int | None = BUDGET) -> Clicks:
    """`clicks` checked against a volume of `shape` (None: no bounds check) and `budget` clicks per
    kind (None: no budget) under `policy`; returns the clicks kept (order preserved). Raises
    InputError (naming `source` and the click) where the policy refuses."""
    policy = ClickPolicy.parse(policy)
    shape = None if shape is None else tuple(int(s) for s in shape)[-3:]
    kept: dict[str, list] = {}
    dropped: list[str] = []
    for kind in KINDS:
        points = [tuple(int(c) for c in p) for p in getattr(clicks, kind)]
        inside = []
        for n, p in enumerate(points):
            if shape is not None and _outside(p, shape):
                where = f"{kind}[{n}] {list(p)} lies outside the volume of shape {shape}"
                if policy is ClickPolicy.STRICT:
                    raise InputError(source, f"click {where} (--drop-outside drops such clicks with a warning)")
                dropped.append(f"{kind}[{n}] {list(p)}")
                continue
            inside.append(p)
        seen: dict[tuple, int] = {}
        for n, p in enumerate(inside):
            if p in seen:
                log.info("%s: %s click %s repeats an earlier one (kept: it changes nothing)", source, kind, list(p))
            seen.setdefault(p, n)
        if budget is not None and len(inside) > budget:
            if policy is not ClickPolicy.LENIENT:
                raise InputError(source, f"{len(inside)} {kind} clicks exceed the budget of {budget} "
                                         f"(first one over it: {kind}[{budget}] {list(inside[budget])})")
            log.warning("%s: %d %s clicks exceed the budget of %d: kept the first %d, dropped %s", source,
                        len(inside), kind, budget, budget, [list(p) for p in inside[budget:]])
            inside = inside[:budget]
        kept[kind] = inside
    if dropped:
        log.warning("%s: %d click(s) outside the volume of shape %s dropped: %s", source, len(dropped), shape,
                    "; ".join(dropped))
    return Clicks(kept["tumor"], kept["background"])
