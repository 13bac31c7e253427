"""Smooth random fields, drawn at low resolution and interpolated up (cheap texture and blob shapes)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import zoom


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells) -> np.ndarray:
    """A float32 field of `shape` with zero mean and unit s.d., smooth over about shape/cells voxels.

    Draws a (cells+1)^3 Gaussian lattice and interpolates it linearly to `shape`."""
    cells = np.broadcast_to(np.asarray(cells, dtype=int), (len(shape),))
    coarse = rng.standard_normal(tuple(int(c) + 1 for c in cells)).astype(np.float32)
    factors = [s / c for s, c in zip(shape, coarse.shape)]
    field = zoom(coarse, factors, order=1, mode="nearest", grid_mode=True)
    field = field[tuple(slice(0, s) for s in shape)]
    if field.shape != tuple(shape):  # zoom rounding: pad the last row if needed
        pad = [(0, s - f) for s, f in zip(shape, field.shape)]
        field = np.pad(field, pad, mode="edge")
    sd = float(field.std())
    return (field - field.mean()) / (sd if sd > 0 else 1.0)
