"""Rule: remove connected components smaller than a volume in mL (noise specks, spill-over)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from petclick.io.images import voxel_volume_ml
from petclick.postprocess.components import components


def remove_small_components(mask: np.ndarray, spacing: Sequence[float], min_ml: float,
                            protect: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """Drop 18-connected components whose volume is under `min_ml` mL.

    Volume = voxel count x sx*sy*sz/1000 (header spacing, as the metrics count it). Components
    holding a point of `protect` (tumour clicks) are kept whatever their size.
    """
    comp = components(mask)
    if comp.n == 0 or min_ml <= 0:
        return np.asarray(mask, bool)
    keep = comp.sizes * voxel_volume_ml(spacing) >= float(min_ml)
    keep |= comp.flags_at(protect)
    return comp.select(keep)
