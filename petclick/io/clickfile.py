"""Click files: the plain and the grand-challenge JSON formats, read under a click policy.

Plain:  {"tumor": [[i, j, k], ...], "background": [[i, j, k], ...]}
Grand challenge: {"version": {"major": 1, "minor": 0}, "type": "Multiple points",
                  "points": [{"point": [i, j, k], "name": "tumor"|"background"}, ...]}
Coordinates are integer voxel indices into the PET/label array as nibabel returns it. Order
matters: protocol step k uses the first k clicks of each list.

Every problem has its own message; under the strict policy it is an InputError naming the file and
the entry, under the lenient one the entry is dropped with a warning (clickpolicy.py):
- a file over MAX_CLICK_FILE_BYTES, bytes that are not UTF-8/16/32, malformed JSON, nesting too
  deep to parse, a top-level value that is not an object: the file cannot be read (an error in
  every policy; the container then predicts step 0 and reports it);
- a UTF-8 byte-order mark or UTF-16/32 text: decoded, with a warning;
- an empty file, `null`, `[]` or `{}`: no clicks (step 0), with a warning saying so;
- a key repeated (`"tumor": [...], "tumor": []`): error / lenient joins the lists in file order;
- an unknown key (`"tumor"` beside `"points"`, `"lesions"`): error / lenient ignores it;
- names other than exactly `tumor` / `background` (`"lesion"`, `"tumor "`, `"Tumor"`);
- coordinates that are not 3 finite integers: 2 or 4 of them, strings, booleans, null, NaN,
  Infinity, fractional values (12.5; 12.0 is accepted as 12): one rule in every command.
Clicks outside the volume, one voxel clicked as both kinds and the 10-per-kind budget are the
policy's (apply_click_policy); repeated clicks are kept.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.io.clickpolicy import BUDGET, ClickDrop, ClickPolicy, DropRecorder, apply_click_policy
from petclick.io.clickset import GC_TYPE, GC_VERSION, KINDS, Clicks, Point
from petclick.io.jsonfile import BadNumber, read_json

__all__ = ["BUDGET", "GC_TYPE", "GC_VERSION", "KINDS", "MAX_CLICK_FILE_BYTES", "Clicks", "ClickPolicy", "Point",
           "clicks_from_json", "clicks_from_points", "read_click_file", "read_clicks", "validate_clicks",
           "write_clicks"]

log = logging.getLogger(__name__)

#: A click file holds at most 20 clicks (about 2 kB); anything over 1 MiB is not one.
MAX_CLICK_FILE_BYTES = 1 << 20
GC_KEYS = ("version", "type", "points", "name")     # a grand-challenge "Multiple points" annotation
GC_POINT_KEYS = ("point", "name", "probability")
_KIND_WORDS = {"tumor": "tumour", "background": "background"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (str, "a string"), (list, "a list"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def coordinate_problem(raw: Any) -> str | None:
    """Why `raw` is not 3 integer voxel indices (None when it is)."""
    if not isinstance(raw, (list, tuple)):
        return f"a click must be a list of 3 voxel indices [i, j, k], got {_type_name(raw)}"
    if len(raw) != 3:
        return f"has {len(raw)} coordinate{'s' if len(raw) != 1 else ''}; a click has 3 (i, j, k)"
    for n, v in enumerate(raw):
        what = f"coordinate {n} ({'ijk'[n]})"
        if isinstance(v, BadNumber):
            return f"{what} is {v.text}, not a finite number"
        if isinstance(v, bool):
            return f"{what} is a boolean ({str(v).lower()}), not a voxel index"
        if v is None:
            return f"{what} is null, not a voxel index"
        if isinstance(v, str):
            return f"{what} is a string ({v!r}), not a number"
        if not isinstance(v, (int, float)):
            return f"{what} is {_type_name(v)}, not a number"
        if isinstance(v, float) and not v.is_integer():
            return f"{what} is fractional ({v:g}); voxel indices are integers"
    return None


def name_problem(name: Any) -> str | None:
    """Why `name` is not exactly 'tumor' or 'background' (None when it is)."""
    if name in KINDS:
        return None
    if not isinstance(name, str):
        return f"name is {_type_name(name)}, not 'tumor' or 'background'"
    if name.strip() in KINDS:
        return f"name {name!r} has spaces around it; expected exactly {name.strip()!r}"
    if name.strip().lower() in KINDS:
        return f"name {name!r} must be lower-case {name.strip().lower()!r}"
    return f"unknown name {name!r}; expected 'tumor' or 'background'"


def _shown(raw: Any) -> Any:
    return raw if isinstance(raw, (list, tuple)) and len(raw) <= 8 else None


class _Parser:
    """Builds Clicks from decoded JSON, sending every problem to a DropRecorder."""

    def __init__(self, rec: DropRecorder):
        self.rec = rec
        self.points: dict[str, list[Point]] = {k: [] for k in KINDS}
        self.labels: dict[str, list[str]] = {k: [] for k in KINDS}

    def add(self, kind: str, raw: Any, entry: str) -> None:
        problem = coordinate_problem(raw)
        if problem is not None:
            self.rec.problem(entry, problem, _shown(raw))
            return
        self.points[kind].append(tuple(int(c) for c in raw))  # type: ignore[arg-type]
        self.labels[kind].append(entry)

    def values(self, data: dict, key: str) -> list:
        """Every value of `key` in file order; a repeated key is an error (strict) or joined (lenient)."""
        values = getattr(data, "duplicates", {}).get(key, [data[key]])
        if len(values) > 1:
            self.rec.problem(f"key {key!r}", f"appears {len(values)} times (a JSON reader keeps only the last, "
                                             "losing the others)", kept="the lists are joined in file order")
        return values

    def unknown_keys(self, data: dict, known: Sequence[str], where: str, lists: Sequence[str]) -> None:
        """Report keys other than `known`, and repeats of keys other than the click `lists` (values() reports those)."""
        for key in data:
            if key not in known:
                self.rec.problem(f"key {key!r}", f"unknown key {where} (expected {', '.join(known)})",
                                 kept="ignored")
            elif key not in lists and key in getattr(data, "duplicates", {}):
                self.rec.problem(f"key {key!r}", f"appears {len(data.duplicates[key])} times",
                                 kept="the first is used")

    def grand_challenge(self, data: dict) -> None:
        self.unknown_keys(data, GC_KEYS, "beside 'points' in a grand-challenge file", ("points",))
        if "type" in data and data["type"] != GC_TYPE:
            self.rec.problem("key 'type'", f"is {data['type']!r}, expected {GC_TYPE!r}", kept="ignored")
        offset = 0
        for points in self.values(data, "points"):
            if not isinstance(points, list):
                self.rec.problem("key 'points'", f"must be a list of point objects, got {_type_name(points)}")
                continue
            for n, item in enumerate(points, offset):
                self.point(item, f"points[{n}]")
            offset += len(points)

    def point(self, item: Any, entry: str) -> None:
        if not isinstance(item, dict) or "point" not in item or "name" not in item:
            self.rec.problem(entry, f"must be an object with 'point' and 'name', got "
                                    f"{_type_name(item) if not isinstance(item, dict) else sorted(item)}")
            return
        repeated = sorted(getattr(item, "duplicates", {}))
        if repeated:
            self.rec.problem(entry, f"repeats the key(s) {repeated}, so the click is ambiguous")
            return
        extra = sorted(k for k in item if k not in GC_POINT_KEYS)
        if extra:
            self.rec.problem(entry, f"unknown key(s) {extra} in a point (expected {', '.join(GC_POINT_KEYS)})",
                             kept="ignored; the click is used")
        problem = name_problem(item["name"])
        if problem is not None:
            self.rec.problem(entry, problem, _shown(item["point"]))
            return
        self.add(item["name"], item["point"], entry)

    def plain(self, data: dict) -> None:
        self.unknown_keys(data, KINDS, "in a plain click file", KINDS)
        for kind in KINDS:
            if kind not in data:
                continue
            offset = 0
            for items in self.values(data, kind):
                if not isinstance(items, list):
                    self.rec.problem(f"key {kind!r}", f"must be a list of [i, j, k] clicks, got {_type_name(items)}")
                    continue
                for n, raw in enumerate(items, offset):
                    self.add(kind, raw, f"{kind}[{n}]")
                offset += len(items)

    def clicks(self) -> Clicks:
        return Clicks(self.points["tumor"], self.points["background"], self.labels)


def _empty_meaning(data: Any) -> str | None:
    """What an empty-looking click file means (None when it is not one)."""
    if data is ...:
        return "the file is empty"
    if data is None:
        return "the file holds null"
    if isinstance(data, (list, dict)) and not data:
        return f"the file holds {json.dumps(data)}"
    return None


def clicks_from_json(data: Any, source: str | Path | None = None, policy: ClickPolicy | str | None = None,
                     drops: list[ClickDrop] | None = None) -> Clicks:
    """Clicks of decoded JSON in either format under `policy` (default strict; see the module docstring)."""
    meaning = _empty_meaning(data)
    if meaning is not None:
        log.warning("%s: %s: no clicks (step 0)", "clicks" if source is None else source, meaning)
        return Clicks(labels={k: [] for k in KINDS})
    if not isinstance(data, dict):
        raise InputError(source, f"click file must hold a JSON object, got {_type_name(data)}")
    if not set(data) & {*KINDS, *GC_KEYS}:
        raise InputError(source, "unknown click-file schema: expected keys 'tumor' and 'background' (plain) "
                                 f"or 'points' (grand challenge), got {sorted(data)}")
    with DropRecorder(source, policy, drops) as rec:
        parser = _Parser(rec)
        if "points" in data or not set(data) & set(KINDS):
            if "points" not in data:
                raise InputError(source, f"grand-challenge click file without 'points' (keys: {sorted(data)})")
            parser.grand_challenge(data)
        else:
            parser.plain(data)
    return parser.clicks()


def read_click_file(path: str | Path, policy: ClickPolicy | str | None = None,
                    drops: list[ClickDrop] | None = None, max_bytes: int = MAX_CLICK_FILE_BYTES) -> Clicks:
    """The clicks of a file of either format, as written, under `policy` (no volume or budget check)."""
    data, notes = read_json(path, max_bytes, "click file")
    for note in notes:
        log.warning("%s: %s", path, note)
    return clicks_from_json(data, path, policy, drops)


def read_clicks(path: str | Path, shape: Sequence[int] | None = None, budget: int | None = BUDGET,
                policy: ClickPolicy | str | None = None, drops: list[ClickDrop] | None = None) -> Clicks:
    """Read a click file and apply the click policy: the volume of `shape`, the per-kind `budget`."""
    clicks = read_click_file(path, policy, drops)
    return apply_click_policy(clicks, shape, path, policy, budget, drops)


def validate_clicks(clicks: Clicks, shape: Sequence[int] | None = None, budget: int | None = None,
                    source: str | Path | None = None, policy: ClickPolicy | str | None = None) -> Clicks:
    """`clicks` under the policy (default strict) for a volume of `shape` and a per-kind `budget`."""
    return apply_click_policy(clicks, shape, source, policy, budget)


def write_clicks(path: str | Path, clicks: Clicks, format: str = "plain") -> Path:
    """Write clicks as plain or grand-challenge ("gc") JSON (atomically: a complete file or none)."""
    if format not in ("plain", "gc"):
        raise ValueError(f"unknown click format {format!r}; use 'plain' or 'gc'")
    payload = clicks.to_dict() if format == "plain" else clicks.to_gc()
    return atomic_write_text(path, _dump_compact_points(payload) + "\n")


def _dump_compact_points(payload: dict) -> str:
    """JSON with one click per line: indented structure, each [i, j, k] kept on a single line."""
    text = json.dumps(payload, indent=1)
    return re.sub(r"\[\s*(-?\d+),\s*(-?\d+),\s*(-?\d+)\s*\]", r"[\1, \2, \3]", text)


def clicks_from_points(tumor: Iterable[Sequence[int]], background: Iterable[Sequence[int]]) -> Clicks:
    """Build Clicks from any integer sequences (e.g. numpy rows)."""
    return Clicks([tuple(int(c) for c in p) for p in tumor], [tuple(int(c) for c in p) for p in background])
