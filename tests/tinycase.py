"""A tiny PET/CT case (10x9x8, anisotropic spacing) for the bad-input tests: body, one lesion."""

from __future__ import annotations

import numpy as np

SHAPE = (10, 9, 8)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def tiny_arrays() -> dict[str, np.ndarray]:
    """CT (air around a 40 HU body), PET (SUV 1, lesion 6) and the lesion label [1:4, 2:5, 2:5]."""
    ct = np.full(SHAPE, -1000.0, np.float32)
    ct[1:-1, 1:-1, 1:-1] = 40.0
    pet = np.ones(SHAPE, np.float32)
    label = np.zeros(SHAPE, np.uint8)
    label[1:4, 2:5, 2:5] = 1
    pet[label == 1] = 6.0
    return {"ct": ct, "pet": pet, "label": label}
