"""The shared bounding box: exact extent, margins clipped to the array, None when empty."""

import numpy as np

from petclick.core.boxes import bounding_box


def test_bounding_box_extent_margin_and_empty():
    mask = np.zeros((10, 8, 6), bool)
    mask[2:4, 5, 0:2] = True
    assert bounding_box(mask) == (slice(2, 4), slice(5, 6), slice(0, 2))
    assert bounding_box(mask, margin=1) == (slice(1, 5), slice(4, 7), slice(0, 3))
    assert bounding_box(mask, margin=(0, 5, 0)) == (slice(2, 4), slice(0, 8), slice(0, 2))
    assert bounding_box(np.zeros((3, 3, 3), bool)) is None
