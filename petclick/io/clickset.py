"""The in-memory clicks of a case: ordered tumour and background voxel indices.

Kept apart from the file formats (clickfile.py) and the policies (clickpolicy.py) so both can use
it without importing each other. `labels` remember where each click came from in its file
(`tumor[3]`, `points[7]`), so a message can name the entry a user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Point = tuple[int, int, int]
KINDS = ("tumor", "background")
GC_VERSION = {"major": 1, "minor": 0}
GC_TYPE = "Multiple points"


@dataclass
class Clicks:
    """Ordered tumour (foreground) and background clicks in voxel indices."""

    tumor: list[Point] = field(default_factory=list)
    background: list[Point] = field(default_factory=list)
    labels: dict[str, list[str]] | None = field(default=None, compare=False, repr=False)

    def label(self, kind: str, n: int) -> str:
        """Where click n of `kind` came from (its file entry), else `kind[n]`."""
        names = (self.labels or {}).get(kind)
        return names[n] if names is not None and n < len(names) else f"{kind}[{n}]"

    def first(self, k: int) -> "Clicks":
        """The clicks protocol step k sees: the first k of each list."""
        labels = None if self.labels is None else {kind: list(v[:k]) for kind, v in self.labels.items()}
        return Clicks(list(self.tumor[:k]), list(self.background[:k]), labels)

    def to_dict(self) -> dict[str, list[list[int]]]:
        return {"tumor": [list(p) for p in self.tumor], "background": [list(p) for p in self.background]}

    def to_gc(self) -> dict:
        points = [{"point": list(p), "name": "tumor"} for p in self.tumor]
        points += [{"point": list(p), "name": "background"} for p in self.background]
        return {"version": dict(GC_VERSION), "type": GC_TYPE, "points": points}

    def __len__(self) -> int:
        return len(self.tumor) + len(self.background)
