"""Error-driven clicks on hand-made masks: the largest error component, its max-EDT voxel, nothing when exact."""

import numpy as np
import pytest
from scipy import ndimage

from petclick.clicks.error_driven import largest_component_centre, next_error_click, next_error_clicks

SHAPE = (24, 24, 24)


def cube(mask, start, size):
    mask[start[0]:start[0] + size, start[1]:start[1] + size, start[2]:start[2] + size] = True
    return mask


def test_missed_lesion_and_false_positive_centres():
    label = cube(cube(np.zeros(SHAPE, bool), (2, 2, 2), 5), (12, 12, 12), 3)  # big 5^3 + small 3^3 lesion
    pred = cube(np.zeros(SHAPE, bool), (12, 12, 12), 3)                     # finds only the small one
    cube(pred, (18, 2, 2), 3)                                                # plus a 3^3 false positive
    cube(pred, (2, 15, 15), 7)                                               # and a 7^3 false positive
    out = next_error_clicks(pred, label)
    assert out == {"tumor": (4, 4, 4), "background": (5, 18, 18)}
    assert next_error_click(pred, label) == ("background", (5, 18, 18))  # 343 FP voxels > 125 missed


def test_largest_component_wins_over_the_first():
    label = cube(cube(np.zeros(SHAPE, bool), (1, 1, 1), 3), (10, 10, 10), 7)
    pred = np.zeros(SHAPE, bool)
    assert next_error_clicks(pred, label) == {"tumor": (13, 13, 13)}
    assert next_error_click(pred, label) == ("tumor", (13, 13, 13))


def test_partly_missed_lesion_click_lies_in_the_missed_part():
    label = np.zeros(SHAPE, bool)
    label[2:20, 5:10, 5:10] = True
    pred = np.zeros(SHAPE, bool)
    pred[2:8, 5:10, 5:10] = True               # the top third found
    point = next_error_clicks(pred, label)["tumor"]
    assert label[point] and not pred[point]
    assert point == (10, 7, 7)                 # first maximum in C order of the 12x5x5 slab's EDT


def test_tie_between_kinds_goes_to_tumour_and_probabilities_are_thresholded():
    label = cube(np.zeros(SHAPE, bool), (2, 2, 2), 3)
    prob = np.zeros(SHAPE, np.float32)
    prob[15:18, 15:18, 15:18] = 0.7            # >= 0.5: a 27-voxel false positive
    prob[2:5, 2:5, 2:5] = 0.4                  # < 0.5: the lesion is missed (27 voxels)
    assert next_error_click(prob, label) == ("tumor", (3, 3, 3))
    assert next_error_clicks(prob, label.astype(np.uint8)) == {"tumor": (3, 3, 3), "background": (16, 16, 16)}


def test_torch_inputs():
    torch = pytest.importorskip("torch")
    label = cube(np.zeros(SHAPE, bool), (2, 2, 2), 5)
    pred = torch.zeros(SHAPE)
    pred[15:18, 15:18, 15:18] = 0.9
    assert next_error_clicks(pred, torch.from_numpy(label)) == {"tumor": (4, 4, 4), "background": (16, 16, 16)}


def test_nothing_to_correct():
    label = cube(np.zeros(SHAPE, bool), (4, 4, 4), 6)
    assert next_error_clicks(label, label) == {}
    assert next_error_click(label, label) is None
    empty = np.zeros(SHAPE, bool)
    assert next_error_clicks(empty, empty) == {} and largest_component_centre(empty) is None


def test_component_touching_the_border_and_diagonal_connectivity():
    label = np.zeros(SHAPE, bool)
    label[0:3, 0:3, 0:3] = True                # touches the volume corner
    label[3, 3, 3] = True                      # 26-connected to it by a corner
    point, size = largest_component_centre(label)
    full = ndimage.distance_transform_edt(label)  # the box EDT equals the whole-volume EDT
    assert size == 28 and point == np.unravel_index(int(np.argmax(full)), SHAPE) == (0, 0, 0)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        next_error_clicks(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="3D"):
        next_error_clicks(np.zeros((4, 4)), np.zeros((4, 4)))
