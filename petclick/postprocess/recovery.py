"""Rule: false-negative recovery from the sub-threshold part of the probability map.

A faint lesion often reaches a probability of 0.2-0.5 without crossing 0.5. A component of
`prob >= low` is added to the mask when it
- shares no voxel with the current mask (a lesion the model missed, not a halo of one it found),
- has SUVmax >= `suv_min` (it is hot on PET: noise and soft tissue are not),
- holds no background click (the reader said "not a lesion" there).
The whole component (`prob >= low`, 18-connected) is added.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from petclick.postprocess.components import components


def recover_false_negatives(mask: np.ndarray, prob: np.ndarray, pet: np.ndarray, low: float, suv_min: float,
                            background: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """The mask plus the hot, new, unvetoed components of `prob >= low` (see the module docstring)."""
    mask = np.asarray(mask, bool)
    candidates = np.asarray(prob) >= float(low)
    candidates |= mask
    comp = components(candidates)
    if comp.n == 0:
        return mask
    overlaps = np.bincount(comp.labels[mask], minlength=comp.n + 1) > 0
    add = ~overlaps & (comp.suv_max(pet) >= float(suv_min)) & ~comp.flags_at(background)
    if not add[1:].any():
        return mask
    return mask | comp.select(add)
