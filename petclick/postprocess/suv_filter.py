"""Rule: drop components whose SUVmax is under a tracer-specific level (no real lesion is that faint)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from petclick.postprocess.components import components

# SUVmax below which a component is not taken for a lesion (autoPET practice: FDG blood pool ~1.5;
# PSMA background is lower, so its level is lower).
TRACER_SUV_MIN = {"fdg": 1.5, "psma": 1.0}


def suv_filter(mask: np.ndarray, pet: np.ndarray, min_suvmax: float, protect: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """Keep the components of `mask` whose SUVmax (PET in SUV) is >= `min_suvmax`, plus those holding a `protect` point."""
    comp = components(mask)
    if comp.n == 0:
        return np.asarray(mask, bool)
    keep = comp.suv_max(pet) >= float(min_suvmax)
    keep |= comp.flags_at(protect)
    return comp.select(keep)
