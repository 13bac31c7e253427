"""Click files: the plain and the grand-challenge JSON formats, with validation.

Plain:  {"tumor": [[i, j, k], ...], "background": [[i, j, k], ...]}
Grand challenge: {"version": {"major": 1, "minor": 0}, "type": "Multiple points",
                  "points": [{"point": [i, j, k], "name": "tumor"|"background"}, ...]}
Coordinates are integer voxel indices into the PET/label array as nibabel returns it. Order
matters: protocol step k uses the first k clicks of each list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from petclick.core.errors import InputError

Point = tuple[int, int, int]
KINDS = ("tumor", "background")
GC_VERSION = {"major": 1, "minor": 0}
GC_TYPE = "Multiple points"


@dataclass
class Clicks:
    """Ordered tumour (foreground) and background clicks in voxel indices."""

    tumor: list[Point] = field(default_factory=list)
    background: list[Point] = field(default_factory=list)

    def first(self, k: int) -> "Clicks":
        """The clicks protocol step k sees: the first k of each list."""
        return Clicks(list(self.tumor[:k]), list(self.background[:k]))

    def to_dict(self) -> dict[str, list[list[int]]]:
        return {"tumor": [list(p) for p in self.tumor], "background": [list(p) for p in self.background]}

    def to_gc(self) -> dict:
        points = [{"point": list(p), "name": "tumor"} for p in self.tumor]
        points += [{"point": list(p), "name": "background"} for p in self.background]
        return {"version": dict(GC_VERSION), "type": GC_TYPE, "points": points}

    def __len__(self) -> int:
        return len(self.tumor) + len(self.background)


def _as_point(raw, source, where: str, allow_negative: bool = False) -> Point:
    if not isinstance(raw, (list, tuple)) or len(raw) != 3:
        raise InputError(source, f"{where}: a click must be a list of 3 voxel indices, got {raw!r}")
    out = []
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(source, f"{where}: click {raw!r} has a non-numeric coordinate")
        if isinstance(v, float) and not v.is_integer():
            raise InputError(source, f"{where}: click {raw!r} has a non-integer coordinate")
        if v < 0 and not allow_negative:
            raise InputError(source, f"{where}: click {raw!r} has a negative coordinate")
        out.append(int(v))
    return tuple(out)  # type: ignore[return-value]


def clicks_from_json(data, source: str | Path | None = None, allow_negative: bool = False) -> Clicks:
    """Parse either JSON format (already decoded) into Clicks; a wrong schema raises InputError.
    `allow_negative`: negative indices parse (a click policy then treats them as outside the volume)."""
    if not isinstance(data, dict):
        raise InputError(source, "click file must hold a JSON object")
    if "points" in data:
        points = data["points"]
        if not isinstance(points, list):
            raise InputError(source, "'points' must be a list")
        clicks = Clicks()
        for n, item in enumerate(points):
            if not isinstance(item, dict) or "point" not in item or "name" not in item:
                raise InputError(source, f"points[{n}] must be an object with 'point' and 'name'")
            name = item["name"]
            if name not in KINDS:
                raise InputError(source, f"points[{n}] has name {name!r}; expected 'tumor' or 'background'")
            getattr(clicks, name).append(_as_point(item["point"], source, f"points[{n}]", allow_negative))
        return clicks
    unknown = set(data) - set(KINDS)
    if unknown or not set(data) & set(KINDS):
        raise InputError(
            source,
            "unknown click-file schema: expected keys 'tumor' and 'background' (plain) "
            f"or 'points' (grand challenge), got {sorted(data)}",
        )
    clicks = Clicks()
    for kind in KINDS:
        items = data.get(kind, [])
        if not isinstance(items, list):
            raise InputError(source, f"'{kind}' must be a list of [i, j, k] clicks")
        for n, raw in enumerate(items):
            getattr(clicks, kind).append(_as_point(raw, source, f"{kind}[{n}]", allow_negative))
    return clicks


def validate_clicks(clicks: Clicks, shape: Sequence[int] | None = None, budget: int | None = None,
                    source: str | Path | None = None) -> Clicks:
    """Check every click lies inside a volume of `shape` and each list holds at most `budget` clicks."""
    for kind in KINDS:
        points = getattr(clicks, kind)
        if budget is not None and len(points) > budget:
            raise InputError(source, f"{len(points)} {kind} clicks exceed the budget of {budget} "
                                     f"(first one over it: {kind}[{budget}] {list(points[budget])})")
        if shape is None:
            continue
        for n, p in enumerate(points):
            if any(c < 0 or c >= s for c, s in zip(p, shape)):
                raise InputError(source, f"{kind}[{n}] click {list(p)} lies outside the volume of shape {tuple(shape)}")
    return clicks


def read_clicks(path: str | Path, shape: Sequence[int] | None = None, budget: int | None = None,
                policy=None) -> Clicks:
    """Read a click file of either format and validate it against `shape` and `budget`; with a
    `policy` (petclick.io.clickpolicy: strict, drop-outside, lenient) and a shape, clicks outside
    the volume and over the budget are treated as that policy says."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "click file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"malformed JSON ({exc})") from exc
    if policy is None or shape is None:
        return validate_clicks(clicks_from_json(data, path), shape, budget, path)
    from petclick.io.clickpolicy import apply_click_policy

    return apply_click_policy(clicks_from_json(data, path, allow_negative=True), shape, path, policy, budget)


def write_clicks(path: str | Path, clicks: Clicks, format: str = "plain") -> Path:
    """Write clicks as plain or grand-challenge ("gc") JSON."""
    if format not in ("plain", "gc"):
        raise ValueError(f"unknown click format {format!r}; use 'plain' or 'gc'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = clicks.to_dict() if format == "plain" else clicks.to_gc()
    path.write_text(_dump_compact_points(payload) + "\n")
    return path


def _dump_compact_points(payload: dict) -> str:
    """JSON with one click per line: indented structure, each [i, j, k] kept on a single line."""
    text = json.dumps(payload, indent=1)
    return re.sub(r"\[\s*(\d+),\s*(\d+),\s*(\d+)\s*\]", r"[\1, \2, \3]", text)


def clicks_from_points(tumor: Iterable[Sequence[int]], background: Iterable[Sequence[int]]) -> Clicks:
    """Build Clicks from any integer sequences (e.g. numpy rows)."""
    return Clicks([tuple(int(c) for c in p) for p in tumor], [tuple(int(c) for c in p) for p in background])
