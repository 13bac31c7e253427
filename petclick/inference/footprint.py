"""What an InteractiveSession holds in memory, by part: what a server bounds and reports.

- `volumes`: the case's CT and PET arrays (PET grid, float32);
- `network`: per engine group, the case in the network's space (CT and PET channels), the current
  input (with the click channels) and the running probability sum, plus each sliding-window grid's
  weight and count map (one per checkpoint and mirroring);
- `tile_cache`: the exact mode's cached tile outputs;
- `journal`: the values each click overwrote (undo without a network pass);
- `prediction`: the latest mask and probability map (the engine's probability map too, when it is
  another array).

Arrays shared between parts (a view, the same tensor held twice) are counted once.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

PARTS = ("volumes", "network", "tile_cache", "journal", "prediction")


class _Counter:
    """Bytes of arrays and tensors, each underlying buffer counted once."""

    def __init__(self):
        self.seen: set[tuple[int, int]] = set()

    def __call__(self, arrays: Iterable[Any]) -> int:
        total = 0
        for a in arrays:
            if a is None:
                continue
            if hasattr(a, "untyped_storage"):             # torch tensor (MetaTensor too)
                key, size = (a.untyped_storage().data_ptr(), 1), a.numel() * a.element_size()
            else:
                a = np.asarray(a)
                base = a.base if isinstance(a.base, np.ndarray) else a
                key, size = (base.__array_interface__["data"][0], 0), a.nbytes
            if key[0] and key in self.seen:
                continue
            self.seen.add(key)
            total += int(size)
        return total


def session_nbytes(session: Any) -> dict[str, int]:
    """Bytes an InteractiveSession holds, by part (module docstring), plus their `total`."""
    count = _Counter()
    case = session.case
    out = {"volumes": count([case.ct.array, case.pet.array])}
    network, journal, cache = 0, 0, 0
    for engine in session.engines:
        for group in engine.groups:
            network += count([group.prepared.image, group.x, group.total])
            grids = {id(m.tiled.grid): m.tiled.grid for m in group.members}      # mirrorings share a grid
            network += sum(g.nbytes for g in grids.values())
        cache += 0 if engine.cache is None else int(engine.cache.bytes)
        journal += sum(t.nbytes for t in engine.journal)
    last = session.last
    prediction = count([] if last is None else [last.mask, last.prob])
    prediction += count([getattr(e, "prob", None) for e in session.engines])
    out.update(network=network, tile_cache=cache, journal=journal, prediction=prediction)
    out["total"] = sum(out[p] for p in PARTS)
    return out
