"""Click geometry: a click keeps its physical position through every spatial transform.

A marked voxel (distinct value) or a small blob is put at each click; after the transform, the click
mapped back with ClicksToVoxeld must sit on the voxel where the mark went (exactly for index
transforms, within a fraction of a voxel of the blob's centre for resampling transforms).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    Flipd,
    LoadImaged,
    Orientationd,
    RandAffined,
    RandFlipd,
    RandRotate90d,
    RandRotated,
    RandSpatialCropd,
    RandZoomd,
    Rotate90d,
    Rotated,
    SpatialCropd,
    SpatialPadd,
    Spacingd,
    Zoomd,
)
from scipy.ndimage import gaussian_filter

from petclick.clicks.geometry import ClicksToVoxeld, ClicksToWorldd, clicks_to_voxel, clicks_to_world
from petclick.clicks.loading import LoadClicksd
from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks, write_clicks

SHAPE = (22, 26, 18)
# LPS-like flipped x, anisotropic spacing, shifted origin: a non-trivial voxel -> world mapping
AFFINE = np.array([[-2.0, 0, 0, 100], [0, 2.5, 0, -50], [0, 0, 3.0, 20], [0, 0, 0, 1]])
CLICKS = {"tumor": np.array([[5.0, 7, 4], [15, 20, 12]]), "background": np.array([[10.0, 3, 14]])}


def _marked(clicks=CLICKS) -> MetaTensor:
    """Image with value n at the n-th click (tumour clicks first), 0 elsewhere."""
    a = np.zeros(SHAPE, np.float32)
    for n, p in enumerate(np.concatenate([clicks["tumor"], clicks["background"]]).astype(int), 1):
        a[tuple(p)] = n
    return MetaTensor(torch.from_numpy(a)[None], affine=torch.from_numpy(AFFINE))


def _blob(p) -> MetaTensor:
    a = np.zeros(SHAPE, np.float32)
    a[tuple(int(v) for v in p)] = 1
    a = gaussian_filter(a, 1.2)
    return MetaTensor(torch.from_numpy(a / a.max())[None], affine=torch.from_numpy(AFFINE))


def _run(transforms, image, clicks=CLICKS, **kw) -> dict:
    d = {"image": image, "clicks": {k: v.copy() for k, v in clicks.items()}}
    d = ClicksToWorldd()(d)
    assert "clicks" not in d and set(d["clicks_world"]) == {"tumor", "background"}
    for t in transforms:
        d = t(d)
    return ClicksToVoxeld(**kw)(d)


def _check_marks(d) -> None:
    """Each kept click sits exactly on its mark; a mark still in the array belongs to a kept click."""
    out = np.asarray(d["image"][0])
    expected = {}
    n = 1
    for kind in ("tumor", "background"):
        for _ in range(len(CLICKS[kind])):
            expected[n] = kind
            n += 1
    present = {int(v) for v in np.unique(out) if v > 0}
    found = set()
    for kind in ("tumor", "background"):
        for p in d["clicks"][kind]:
            np.testing.assert_allclose(p, np.round(p), atol=1e-6)
            v = int(out[tuple(np.round(p).astype(int))])
            assert v in present and expected[v] == kind
            found.add(v)
    assert found == present


EXACT = {
    "orientation_ras": [Orientationd("image", axcodes="RAS", labels=None)],
    "orientation_pli": [Orientationd("image", axcodes="PLI", labels=None)],
    "crop_foreground": [CropForegroundd("image", "image", margin=1)],
    "spatial_pad": [SpatialPadd("image", (30, 31, 29))],
    "spatial_pad_end": [SpatialPadd("image", (30, 31, 29), method="end")],
    "flip_0": [Flipd("image", 0)],
    "flip_1": [Flipd("image", 1)],
    "flip_2": [Flipd("image", 2)],
    "flip_all": [Flipd("image", (0, 1, 2))],
    "rotate90_xy": [Rotate90d("image", k=1, spatial_axes=(0, 1))],
    "rotate90_xz_k3": [Rotate90d("image", k=3, spatial_axes=(0, 2))],
    "rand_flip": [RandFlipd("image", prob=1.0, spatial_axis=2)],
    "rand_rotate90": [RandRotate90d("image", prob=1.0, max_k=3, spatial_axes=(1, 2))],
    "chain": [Orientationd("image", axcodes="RAS", labels=None), SpatialPadd("image", (30, 30, 30)),
              Rotate90d("image", k=2), Flipd("image", 1), CropForegroundd("image", "image", margin=2)],
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_index_transforms_keep_clicks_on_their_voxel(name):
    for t in EXACT[name]:
        if hasattr(t, "set_random_state"):
            t.set_random_state(7)
    d = _run(EXACT[name], _marked())
    assert len(d["clicks"]["tumor"]) == 2 and len(d["clicks"]["background"]) == 1
    _check_marks(d)


def test_orientation_actually_moves_the_click():
    d = _run([Orientationd("image", axcodes="RAS", labels=None)], _marked())
    np.testing.assert_allclose(d["clicks"]["tumor"][0], [SHAPE[0] - 1 - 5, 7, 4])


RESAMPLING = {
    "spacing_anisotropic": [Spacingd("image", pixdim=(1.3, 1.9, 2.2), mode="bilinear")],
    "spacing_coarse": [Spacingd("image", pixdim=(3.0, 3.5, 2.0), mode="bilinear")],
    "rotate_non90": [Rotated("image", angle=(0.3, 0.0, 0.45), keep_size=True, mode="bilinear")],
    "rotate_grow": [Rotated("image", angle=(0.0, 0.5, 0.0), keep_size=False, mode="bilinear")],
    "zoom_in": [Zoomd("image", zoom=1.4, keep_size=True)],
    "zoom_out": [Zoomd("image", zoom=0.7, keep_size=False)],
    "zoom_aniso": [Zoomd("image", zoom=(1.3, 0.8, 1.1), keep_size=True)],
    "rand_rotate": [RandRotated("image", range_x=0.5, range_y=0.5, range_z=0.5, prob=1.0, keep_size=True)],
    "rand_zoom": [RandZoomd("image", prob=1.0, min_zoom=0.75, max_zoom=1.3, keep_size=True)],
    "rand_affine": [RandAffined("image", prob=1.0, rotate_range=0.3, scale_range=0.15, translate_range=2.0,
                                padding_mode="zeros")],
    "spacing_then_rotate_flip": [Spacingd("image", pixdim=(2.0, 2.0, 2.0)), Rotated("image", angle=0.4),
                                 Flipd("image", 0)],
}


def _blob_centre(out: np.ndarray) -> np.ndarray:
    w = np.where(out >= 0.5 * out.max(), out, 0.0)
    g = np.indices(out.shape).reshape(3, -1)
    return (g * w.reshape(-1)).sum(1) / w.sum()


@pytest.mark.parametrize("name", sorted(RESAMPLING))
def test_resampling_transforms_keep_clicks_on_the_blob(name):
    p = np.array([11.0, 12.0, 9.0])
    for t in RESAMPLING[name]:
        if hasattr(t, "set_random_state"):
            t.set_random_state(11)
    clicks = {"tumor": p[None], "background": np.zeros((0, 3))}
    d = _run(RESAMPLING[name], _blob(p), clicks)
    out = np.asarray(d["image"][0])
    assert len(d["clicks"]["tumor"]) == 1
    q = d["clicks"]["tumor"][0]
    peak = np.array(np.unravel_index(out.argmax(), out.shape))
    assert np.abs(peak - q).max() <= 1.0  # the nearest voxel is the max voxel or its neighbour
    np.testing.assert_allclose(q, _blob_centre(out), atol=0.35)


def test_spacing_moves_click_by_the_spacing_ratio():
    d = _run([Spacingd("image", pixdim=(1.0, 1.25, 1.5))], _marked())
    # world is fixed and the origin stays, so voxel coordinates scale by old/new spacing
    np.testing.assert_allclose(d["clicks"]["tumor"][1], [15 * 2.0, 20 * 2.0, 12 * 2.0], atol=1e-6)


def test_random_crop_drops_clicks_outside():
    crop = RandSpatialCropd("image", roi_size=(8, 9, 8), random_size=False)
    crop.set_random_state(0)
    d = _run([crop], _marked(), dropped_key="clicks_dropped")
    kept = len(d["clicks"]["tumor"]) + len(d["clicks"]["background"])
    assert kept + d["clicks_dropped"] == 3 and d["clicks_dropped"] >= 1
    _check_marks(d)


def test_crop_cutting_one_click_drops_exactly_that_click():
    crop = SpatialCropd("image", roi_start=(0, 0, 0), roi_end=(12, 26, 18))  # keeps x < 12
    d = _run([crop], _marked(), dropped_key="n")
    np.testing.assert_allclose(d["clicks"]["tumor"], [[5, 7, 4]])
    np.testing.assert_allclose(d["clicks"]["background"], [[10, 3, 14]])
    assert d["n"] == 1
    _check_marks(d)


def test_lazy_compose_gives_the_same_clicks():
    chain = [Spacingd("image", pixdim=(1.5, 2.0, 2.5)), Rotated("image", angle=(0.2, 0.1, 0.3)),
             Flipd("image", 1), SpatialPadd("image", (40, 40, 40))]
    clicks = {"tumor": np.array([[11.0, 12, 9]]), "background": np.zeros((0, 3))}
    eager = _run(chain, _blob((11, 12, 9)), clicks)
    pipe = Compose([ClicksToWorldd(), *chain, ClicksToVoxeld()], lazy=True)
    lazy = pipe({"image": _blob((11, 12, 9)), "clicks": clicks})
    np.testing.assert_allclose(lazy["clicks"]["tumor"], eager["clicks"]["tumor"], atol=1e-4)
    assert lazy["image"].shape == eager["image"].shape
    np.testing.assert_allclose(lazy["clicks"]["tumor"][0], _blob_centre(np.asarray(lazy["image"][0])), atol=0.35)


@settings(max_examples=20, deadline=None)
@given(
    flips=st.lists(st.integers(0, 2), max_size=3),
    k=st.integers(0, 3),
    axes=st.sampled_from([(0, 1), (0, 2), (1, 2)]),
    pad=st.tuples(*[st.integers(0, 6)] * 3),
    start=st.tuples(st.integers(0, 12), st.integers(0, 14), st.integers(0, 10)),
    size=st.tuples(st.integers(4, 16), st.integers(4, 16), st.integers(4, 14)),
    axcodes=st.sampled_from(["RAS", "LPS", "SAR", "ILP"]),
)
def test_property_index_chains(flips, k, axes, pad, start, size, axcodes):
    spatial = [s + p for s, p in zip(SHAPE, pad)]
    chain = [Orientationd("image", axcodes=axcodes, labels=None)]
    chain += [Flipd("image", a) for a in flips]
    chain += [Rotate90d("image", k=k, spatial_axes=axes), SpatialPadd("image", spatial, method="end")]
    chain += [SpatialCropd("image", roi_start=start, roi_end=[s + z for s, z in zip(start, size)])]
    d = _run(chain, _marked(), dropped_key="n")
    assert d["n"] + sum(len(v) for v in d["clicks"].values()) == 3
    _check_marks(d)


# ---------------------------------------------------------------- array functions


def test_world_voxel_roundtrip_oblique_affine():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = q @ np.diag([0.8, 1.5, 3.0])
    affine[:3, 3] = [-20, 7, 300]
    pts = rng.uniform(0, 20, (7, 3))
    world = clicks_to_world(pts, affine)
    np.testing.assert_allclose(world, (affine @ np.c_[pts, np.ones(7)].T).T[:, :3])
    np.testing.assert_allclose(clicks_to_voxel(world, affine), pts, atol=1e-9)
    np.testing.assert_allclose(clicks_to_voxel(world, torch.from_numpy(affine)), pts, atol=1e-9)
    assert clicks_to_world(np.zeros((0, 3)), affine).shape == (0, 3)


def test_clicks_to_voxel_drop_bounds():
    pts = np.array([[-0.5, 0, 0], [-0.51, 0, 0], [9.49, 4, 4], [9.5, 4, 4], [0, 4.49, 0], [0, 0, -0.6]])
    vox, keep = clicks_to_voxel(pts, np.eye(4), (10, 5, 5), return_mask=True)
    assert keep.tolist() == [True, False, True, False, True, False]
    np.testing.assert_allclose(vox, pts[keep])


def test_geometry_errors():
    with pytest.raises(ValueError, match="affine"):
        ClicksToWorldd()({"image": torch.zeros(1, 4, 4, 4), "clicks": CLICKS})
    with pytest.raises(KeyError, match="LoadClicksd"):
        ClicksToWorldd()({"image": _marked()})
    with pytest.raises(KeyError, match="ClicksToWorldd"):
        ClicksToVoxeld()({"image": _marked(), "clicks": CLICKS})
    with pytest.raises(ValueError, match="unknown click kinds"):
        ClicksToWorldd()({"image": _marked(), "clicks": {"lesion": np.zeros((1, 3))}})
    assert ClicksToWorldd(allow_missing_keys=True)({"image": _marked()}).keys() == {"image"}


# ---------------------------------------------------------------- loading + end-to-end


def test_load_clicks_formats_first_k_and_missing(tmp_path):
    clicks = Clicks([(1, 2, 3), (4, 5, 6), (7, 8, 9)], [(2, 2, 2)])
    for fmt in ("plain", "gc"):
        path = write_clicks(tmp_path / f"{fmt}.json", clicks, fmt)
        d = LoadClicksd(k=2)({"clicks": str(path)})
        np.testing.assert_array_equal(d["clicks"]["tumor"], [[1, 2, 3], [4, 5, 6]])
        np.testing.assert_array_equal(d["clicks"]["background"], [[2, 2, 2]])
        assert d["clicks"]["tumor"].dtype == np.float64
    d0 = LoadClicksd(k=0)({"clicks": clicks})
    assert d0["clicks"]["tumor"].shape == (0, 3) and d0["clicks"]["background"].shape == (0, 3)
    d = LoadClicksd()({"clicks": {"tumor": [[1, 1, 1]]}})
    assert d["clicks"]["tumor"].shape == (1, 3) and d["clicks"]["background"].shape == (0, 3)
    d = LoadClicksd()({"clicks": {"tumor": np.array([[3, 3, 3]]), "background": np.zeros((0, 3))}})
    np.testing.assert_array_equal(d["clicks"]["tumor"], [[3, 3, 3]])
    assert LoadClicksd()({})["clicks"]["tumor"].shape == (0, 3)
    with pytest.raises(InputError, match="no clicks"):
        LoadClicksd(missing="error")({})


def test_load_clicks_errors_name_file_and_click(tmp_path):
    path = write_clicks(tmp_path / "c.json", Clicks([(1, 2, 3), (30, 2, 3)], []))
    with pytest.raises(InputError, match=r"c\.json.*tumor\[1\].*\[30, 2, 3\].*outside"):
        LoadClicksd(ref_key="image")({"clicks": str(path), "image": _marked()})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tumour": [[1, 2, 3]]}))
    with pytest.raises(InputError, match="bad.json.*schema"):
        LoadClicksd()({"clicks": str(bad)})
    with pytest.raises(InputError, match="budget"):
        LoadClicksd(budget=1)({"clicks": str(path)})
    with pytest.raises(InputError, match="expected a click-file path"):
        LoadClicksd()({"clicks": 5})


def test_end_to_end_nifti_pipeline(tmp_path):
    """Clicks in nibabel voxel indices stay on their marked voxels through a loaded training-style chain."""
    a = np.asarray(_marked()[0])
    nib.save(nib.Nifti1Image(a, AFFINE), tmp_path / "img.nii.gz")
    write_clicks(tmp_path / "clicks.json", Clicks([(5, 7, 4), (15, 20, 12)], [(10, 3, 14)]), "gc")
    pipe = Compose([
        LoadImaged("image"), EnsureChannelFirstd("image"),
        LoadClicksd(ref_key="image"), ClicksToWorldd(),
        Orientationd("image", axcodes="RAS", labels=None), Spacingd("image", pixdim=(2.0, 2.5, 3.0), mode="nearest"),
        SpatialPadd("image", (28, 28, 28)), Flipd("image", 2), ClicksToVoxeld(),
    ])
    d = pipe({"image": str(tmp_path / "img.nii.gz"), "clicks": str(tmp_path / "clicks.json")})
    _check_marks(d)


def test_pending_lazy_operations_are_accounted_for():
    """A reference image with pending (unapplied) lazy operations: the pending affine and shape are used."""
    from monai.transforms.lazy.functional import apply_pending

    d = ClicksToWorldd()({"image": _marked(), "clicks": CLICKS})
    for t in (Spacingd("image", pixdim=(1.0, 1.25, 1.5), mode="nearest", lazy=True),
              Flipd("image", 0, lazy=True),
              SpatialCropd("image", roi_start=(0, 0, 0), roi_end=(40, 52, 20), lazy=True)):
        d = t(d)
    assert d["image"].has_pending_operations
    d = ClicksToVoxeld()(d)
    d["image"] = apply_pending(d["image"], overrides={"mode": "nearest"})[0]
    assert d["image"].shape[1:] == (40, 51, 20)
    # z spacing 3 -> 1.5 mm puts the clicks at z = 8, 24, 28: the crop z < 20 keeps only the first
    assert len(d["clicks"]["tumor"]) == 1 and len(d["clicks"]["background"]) == 0
    _check_marks(d)
