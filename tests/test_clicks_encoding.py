"""Click encodings: values at and around clicks, combination, channels, units, devices, config."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from monai.data import MetaTensor

from petclick.clicks.encoding import (
    EncodeClicks,
    EncodeClicksd,
    encoder_from_config,
    encoderd_from_config,
    num_click_channels,
)

SHAPE = (24, 26, 22)


def _clicks(tumor=(), background=()):
    return {"tumor": np.asarray(tumor, float).reshape(-1, 3),
            "background": np.asarray(background, float).reshape(-1, 3)}


def _image(spacing=(1.0, 1.0, 1.0), c=2):
    return MetaTensor(torch.rand(c, *SHAPE), affine=torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64)))


def _dist_grid(center, spacing=(1.0, 1.0, 1.0)):
    g = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1).astype(float)
    return np.sqrt((((g - np.asarray(center)) * np.asarray(spacing)) ** 2).sum(-1))


def test_edt_values_linear_falloff_and_zero_outside():
    c = (10, 12, 9)
    out = EncodeClicks("edt", radius=4)(_image(), _clicks([c]))
    assert out.shape == (4, *SHAPE)
    fg, bg = out[2].numpy(), out[3].numpy()
    d = _dist_grid(c)
    np.testing.assert_allclose(fg, np.clip(1 - d / 4, 0, None), atol=1e-6)
    assert fg[c] == 1.0 and fg[10, 12, 11] == pytest.approx(0.5) and fg[10, 12, 13] == 0.0
    assert (fg[d >= 4] == 0).all() and (fg[d < 4] > 0).all()
    assert not bg.any()


def test_image_channels_kept_first():
    img = _image()
    out = EncodeClicks("edt")(img, _clicks([(3, 3, 3)], [(5, 5, 5)]))
    torch.testing.assert_close(out[:2].as_tensor(), img.as_tensor())
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine, img.affine)


def test_disk_is_binary_ball():
    c = (12, 13, 11)
    fg = EncodeClicks("disk", radius=3)(_image(), _clicks([c]))[2].numpy()
    assert set(np.unique(fg)) == {0.0, 1.0}
    np.testing.assert_array_equal(fg == 1, _dist_grid(c) <= 3)


def test_gaussian_peak_and_unit():
    c = (11, 12, 10)
    d = _dist_grid(c)
    peak = EncodeClicks("gaussian", sigma=2.0)(_image(), _clicks([c]))[2].numpy()
    assert peak[c] == pytest.approx(1.0)
    np.testing.assert_allclose(peak[d <= 6], np.exp(-d[d <= 6] ** 2 / 8), atol=1e-6)
    assert (peak[d > 6.01] == 0).all()  # truncated at 3 sigma
    unit = EncodeClicks("gaussian", sigma=2.0, gaussian_norm="unit")(_image(), _clicks([c]))[2].numpy()
    assert unit.sum() == pytest.approx(1.0, abs=1e-5)
    assert unit[c] == unit.max() and unit[c] < 0.1
    # sub-voxel click: still sums to 1, peak between the two neighbouring voxels
    sub = EncodeClicks("gaussian", sigma=2.0, gaussian_norm="unit")(_image(), _clicks([(11.5, 12, 10)]))[2].numpy()
    assert sub.sum() == pytest.approx(1.0, abs=1e-5)
    assert sub[11, 12, 10] == pytest.approx(sub[12, 12, 10])


def test_overlapping_clicks_combine_by_max_and_sum():
    a, b = (8, 12, 10), (11, 12, 10)
    enc = EncodeClicks("edt", radius=4)
    fg = enc(_image(), _clicks([a, b]))[2].numpy()
    expected = np.maximum(np.clip(1 - _dist_grid(a) / 4, 0, None), np.clip(1 - _dist_grid(b) / 4, 0, None))
    np.testing.assert_allclose(fg, expected, atol=1e-6)
    assert fg.max() == 1.0
    summed = EncodeClicks("edt", radius=4, combine="sum")(_image(), _clicks([a, b]))[2].numpy()
    np.testing.assert_allclose(summed[9, 12, 10], (1 - 1 / 4) + (1 - 2 / 4), atol=1e-6)


def test_signed_channel_is_fg_minus_bg():
    img = _image()
    # fg and bg overlap, and the two bg clicks overlap each other (max inside the bg channel first)
    clicks = _clicks([(6, 6, 6), (12, 12, 12)], [(14, 12, 12), (16, 13, 12), (18, 20, 15)])
    for encoding in ("edt", "gaussian", "disk"):
        for combine in ("max", "sum"):
            two = EncodeClicks(encoding, radius=4, combine=combine)(img, clicks)
            signed = EncodeClicks(encoding, radius=4, combine=combine, channels="signed")(img, clicks)
            assert signed.shape == (3, *SHAPE)
            torch.testing.assert_close(signed[2].as_tensor(), (two[2] - two[3]).as_tensor())
    signed = EncodeClicks("edt", radius=4, channels="signed")(img, clicks)
    assert signed[2, 6, 6, 6] == 1.0 and signed[2, 18, 20, 15] == -1.0
    assert signed[2, 16, 12, 12] == pytest.approx(-0.75)  # max of the bg pair (0.5, 0.75), not the sum
    assert signed[2, 13, 12, 12] == pytest.approx((1 - 1 / 4) - (1 - 1 / 4))


def test_no_clicks_gives_zero_channels():
    for clicks in (None, {}, _clicks()):
        out = EncodeClicks("gaussian")(_image(), clicks)
        assert out.shape == (4, *SHAPE) and not out[2:].any()
    d = EncodeClicksd(encoding="disk")({"image": _image()})
    assert d["image"].shape == (4, *SHAPE) and not d["image"][2:].any()


def test_clicks_near_border_are_clipped_not_wrapped():
    c = (0, 25, 21)
    enc = EncodeClicks("edt", radius=3)
    fg = enc(_image(), _clicks([c]))[2].numpy()
    np.testing.assert_allclose(fg, np.clip(1 - _dist_grid(c) / 3, 0, None), atol=1e-6)
    assert fg[-1].max() == 0 and fg[:, 0].max() == 0 and fg[:, :, 0].max() == 0  # nothing wrapped around
    unit = EncodeClicks("gaussian", sigma=2, gaussian_norm="unit")(_image(), _clicks([c]))[2].numpy()
    assert 0.05 < unit.sum() < 0.5  # part of the kernel lies outside the image: no renormalisation


def test_mm_units_with_anisotropic_spacing():
    spacing = (1.0, 2.0, 4.0)
    c = (12, 12, 10)
    img = _image(spacing)
    fg = EncodeClicks("edt", radius=8, radius_unit="mm")(img, _clicks([c]))[2].numpy()
    np.testing.assert_allclose(fg, np.clip(1 - _dist_grid(c, spacing) / 8, 0, None), atol=1e-6)
    assert fg[16, 12, 10] == pytest.approx(0.5) and fg[12, 14, 10] == pytest.approx(0.5)
    assert fg[12, 12, 11] == pytest.approx(0.5) and fg[12, 12, 12] == 0
    vox = EncodeClicks("edt", radius=8, radius_unit="voxel")(img, _clicks([c]))[2].numpy()
    assert vox[12, 12, 14] == pytest.approx(0.5)
    g = EncodeClicks("gaussian", sigma=4, sigma_unit="mm")(img, _clicks([c]))[2].numpy()
    assert g[12, 12, 11] == pytest.approx(np.exp(-0.5)) and g[16, 12, 10] == pytest.approx(np.exp(-0.5))
    # explicit spacing overrides the affine (plain tensors have none)
    plain = EncodeClicks("edt", radius=8, radius_unit="mm", spacing=spacing)(img.as_tensor(), _clicks([c]))
    np.testing.assert_allclose(plain[2].numpy(), fg, atol=1e-6)


def test_subvoxel_click_position():
    fg = EncodeClicks("edt", radius=2)(_image(), _clicks([(10.5, 12, 9)]))[2].numpy()
    assert fg[10, 12, 9] == pytest.approx(0.75) and fg[11, 12, 9] == pytest.approx(0.75)
    assert fg[12, 12, 9] == pytest.approx(0.25) and fg[13, 12, 9] == 0


def test_numpy_input_and_dtypes():
    img = _image()
    clicks = _clicks([(5, 6, 7)], [(15, 16, 17)])
    ref = EncodeClicks("gaussian")(img, clicks)
    out = EncodeClicks("gaussian")(img.numpy(), clicks)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-6)
    half = EncodeClicks("gaussian")(img.as_tensor().half(), clicks)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half[2:].float(), ref[2:].as_tensor(), atol=1e-3, rtol=1e-3)
    ints = EncodeClicks("disk")(torch.zeros(1, *SHAPE, dtype=torch.int16), clicks)
    assert ints.dtype == torch.float32 and ints[1, 5, 6, 7] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("encoding", ["edt", "disk", "gaussian"])
def test_cuda_matches_cpu(encoding):
    img = _image((1.0, 2.0, 3.0))
    clicks = _clicks([(5, 6.5, 7), (6, 6, 6)], [(15, 16, 17)])
    for channels in ("two", "signed"):
        enc = EncodeClicks(encoding, radius=6, radius_unit="mm", sigma=3, sigma_unit="mm", channels=channels)
        cpu = enc(img, clicks)
        gpu = enc(img.to("cuda"), clicks)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu().as_tensor(), cpu.as_tensor(), atol=1e-5, rtol=1e-5)


def test_dict_transform_and_config():
    data = {"image": _image(), "clicks": _clicks([(5, 5, 5)]), "label": 1}
    enc = encoderd_from_config({"encoding": "edt", "radius": 5, "radius_unit": "voxel", "channels": "two"},
                               drop_clicks=True)
    out = enc(data)
    assert out["image"].shape == (4, *SHAPE) and "clicks" not in out and out["label"] == 1
    assert data["image"].shape == (2, *SHAPE)  # input dict untouched
    e = encoder_from_config({"encoding": "gaussian", "sigma": 2, "sigma_unit": "mm", "norm": "unit",
                             "channels": "signed"})
    assert (e.encoding, e.sigma, e.sigma_unit, e.gaussian_norm, e.channels) == ("gaussian", 2.0, "mm", "unit", "signed")
    assert encoder_from_config("disk").encoding == "disk"
    assert EncodeClicksd(encoding="gaussian", norm="unit").encoder.gaussian_norm == "unit"
    assert num_click_channels({"encoding": "edt", "channels": "two"}) == 2
    assert num_click_channels({"encoding": "disk", "channels": "signed"}) == 1
    assert num_click_channels(None) == 2


@pytest.mark.parametrize("bad, match", [
    ({"encoding": "heatmap"}, "unknown click encoding 'heatmap'"),
    ({"channels": "three"}, "unknown click channels"),
    ({"radius_unit": "cm"}, "unknown click radius_unit"),
    ({"encoding": "gaussian", "norm": "area"}, "unknown click gaussian_norm"),
    ({"radius": 0}, "radius must be a positive number"),
    ({"sigma": "wide"}, "sigma must be a positive number"),
    ({"radius": 5, "colour": "red"}, r"unknown click encoding option\(s\) \['colour'\]"),
])
def test_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        encoder_from_config(bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="channel-first"):
        EncodeClicks()(torch.zeros(*SHAPE), _clicks([(1, 1, 1)]))
    with pytest.raises(ValueError, match="unknown click kinds"):
        EncodeClicks()(_image(), {"lesion": np.zeros((1, 3))})


def _dense(clicks_xyz, spacing, encoding, r, shape=(12, 10, 9)):
    """Brute-force reference: every voxel against every click, combined by max."""
    g = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(float)
    out = np.zeros(shape)
    for c in clicks_xyz:
        d = np.sqrt((((g - c) * spacing) ** 2).sum(-1))
        v = np.clip(1 - d / r, 0, None) if encoding == "edt" else (d <= r + 1e-6).astype(float)
        out = np.maximum(out, v)
    return out


@settings(max_examples=20, deadline=None)
@given(
    clicks=st.lists(st.tuples(st.floats(-0.5, 11.49), st.floats(-0.5, 9.49), st.floats(-0.5, 8.49)),
                    min_size=0, max_size=4),
    spacing=st.tuples(*[st.sampled_from([0.8, 1.0, 2.0, 3.5])] * 3),
    r=st.floats(1.0, 7.0),
    encoding=st.sampled_from(["edt", "disk"]),
)
def test_property_matches_dense_reference(clicks, spacing, r, encoding):
    shape = (12, 10, 9)
    img = MetaTensor(torch.zeros(1, *shape), affine=torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64)))
    pts = np.asarray(clicks, float).reshape(-1, 3)
    out = EncodeClicks(encoding, radius=r, radius_unit="mm")(img, {"tumor": pts})[1].numpy()
    ref = _dense(pts, np.asarray(spacing), encoding, r, shape)
    if encoding == "disk":  # float32 vs float64 distances may disagree exactly on the rim
        assert (out != ref).mean() < 0.01
    else:
        np.testing.assert_allclose(out, ref, atol=1e-5)


# ---------------------------------------------------------------- uptake: the click's uptake region (issue 26)
def _pet_image(pet: np.ndarray) -> MetaTensor:
    """(CT, PET) input with a flat CT and the given PET."""
    img = np.stack([np.zeros_like(pet), pet]).astype(np.float32)
    return MetaTensor(torch.from_numpy(img), affine=torch.eye(4, dtype=torch.float64))


def _two_blobs() -> np.ndarray:
    pet = np.full(SHAPE, 0.1, np.float32)
    pet[6:11, 6:11, 6:11] = 1.0       # the clicked lesion (5^3), hottest at its centre
    pet[8, 8, 8] = 2.0
    pet[13:16, 6:9, 6:9] = 1.5        # a second hot spot two voxels away: not connected to the first
    return pet


def _uptake_reference(pet: np.ndarray, click, radius: float, uptake_radius: float, fraction: float) -> np.ndarray:
    """The uptake encoding's definition, written densely with cc3d (26-connected) for comparison."""
    import cc3d

    d = _dist_grid(click)
    ball = d <= uptake_radius + 1e-6
    c = tuple(int(v) for v in click)
    near = pet[max(c[0] - 1, 0):c[0] + 2, max(c[1] - 1, 0):c[1] + 2, max(c[2] - 1, 0):c[2] + 2]
    peak, lo = near.max(), pet[ball].min()
    cand = ball & (pet >= lo + fraction * (peak - lo)) & (peak > lo)
    region = np.zeros(SHAPE, bool)
    if cand[c]:
        labels = cc3d.connected_components(cand.astype(np.uint8), connectivity=26)
        region = labels == labels[c]
    if region.sum() > 0.5 * ball.sum():
        region[:] = False
    edt = np.clip(1.0 - d / radius, 0.0, None)
    return np.maximum(edt, region.astype(np.float64))


def test_uptake_region_is_the_clicked_hot_spot_only():
    enc = encoder_from_config({"encoding": "uptake", "radius": 1.5, "uptake_radius": 8})
    pet = _two_blobs()
    fg = enc(_pet_image(pet), _clicks(tumor=[(8, 8, 8)]))[2].numpy()
    assert np.all(fg[6:11, 6:11, 6:11] == 1.0)            # the whole clicked lesion, not just the ball
    assert np.all(fg[13:16, 6:9, 6:9] == 0.0)             # the other hot spot is not connected to the click
    assert np.count_nonzero(fg) == 125
    np.testing.assert_allclose(fg, _uptake_reference(pet, (8, 8, 8), 1.5, 8, 0.41), atol=1e-6)


def test_uptake_region_ignores_pet_shift_and_scale():
    """Background-corrected: intensity augmentation (shift, scale) and PET scaling leave it unchanged."""
    enc = encoder_from_config({"encoding": "uptake", "radius": 2, "uptake_radius": 8})
    pet = _two_blobs()
    clicks = _clicks(tumor=[(8, 8, 8)], background=[(14, 7, 7)])
    a = enc(_pet_image(pet), clicks)[2:]
    b = enc(_pet_image(3.0 * pet + 5.0), clicks)[2:]
    assert torch.equal(a, b)
    assert torch.equal(a, enc(_pet_image(pet), clicks)[2:])      # deterministic
    assert np.all(b[1].numpy()[13:16, 6:9, 6:9] == 1.0)          # a background click marks its hot spot too


def test_uptake_flat_uptake_and_no_contrast_keep_only_the_ball():
    enc = encoder_from_config({"encoding": "uptake", "radius": 2, "uptake_radius": 6})
    flat = np.full(SHAPE, 0.7, np.float32)
    ramp = np.broadcast_to(np.linspace(0, 1, SHAPE[0], dtype=np.float32)[:, None, None], SHAPE).copy()
    ball = np.clip(1.0 - _dist_grid((12, 12, 10)) / 2, 0, None)
    for pet in (flat, ramp):   # no contrast; a region filling more than half of the ball
        fg = enc(_pet_image(pet), _clicks(tumor=[(12, 12, 10)]))[2].numpy()
        np.testing.assert_allclose(fg, ball, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), click=st.tuples(st.integers(0, SHAPE[0] - 1), st.integers(0, SHAPE[1] - 1),
                                                   st.integers(0, SHAPE[2] - 1)),
       uptake_radius=st.sampled_from([3.0, 5.0, 7.5]), fraction=st.sampled_from([0.3, 0.41, 0.7]))
def test_uptake_property_matches_dense_reference(seed, click, uptake_radius, fraction):
    from scipy.ndimage import gaussian_filter

    pet = gaussian_filter(np.random.default_rng(seed).random(SHAPE), 1.5).astype(np.float32)
    enc = encoder_from_config({"encoding": "uptake", "radius": 2, "uptake_radius": uptake_radius,
                               "uptake_fraction": fraction})
    fg = enc(_pet_image(pet), _clicks(tumor=[click]))[2].numpy()
    np.testing.assert_allclose(fg, _uptake_reference(pet, click, 2, uptake_radius, fraction), atol=1e-6)
    # the incremental engines' guarantee: nothing outside the click's support box
    (lo, hi), = enc.support_boxes([click], SHAPE)
    outside = np.ones(SHAPE, bool)
    outside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = False
    assert not fg[outside].any()


def test_uptake_follows_the_image_through_a_flip():
    """Flip image and clicks together: the encoding is the flipped encoding (the click keeps its lesion)."""
    enc = encoder_from_config({"encoding": "uptake", "radius": 1.5, "uptake_radius": 8})
    pet = _two_blobs()
    click = np.array([8.0, 8.0, 8.0])
    a = enc(_pet_image(pet), _clicks(tumor=[click]))[2].numpy()
    flipped_click = click.copy()
    flipped_click[0] = SHAPE[0] - 1 - click[0]
    b = enc(_pet_image(np.ascontiguousarray(pet[::-1])), _clicks(tumor=[flipped_click]))[2].numpy()
    np.testing.assert_array_equal(b, a[::-1])


@pytest.mark.parametrize("bad, match", [
    ({"encoding": "uptake", "uptake_fraction": 1.5}, "uptake_fraction"),
    ({"encoding": "uptake", "uptake_radius": -1}, "uptake_radius"),
    ({"encoding": "uptake", "pet_channel": "PET"}, "pet_channel"),
    ({"encoding": "uptake", "uptake_threshold": 0.4}, "unknown click encoding option"),
])
def test_uptake_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        encoder_from_config(bad)


def test_uptake_needs_the_pet_channel():
    enc = encoder_from_config({"encoding": "uptake", "pet_channel": 2})
    with pytest.raises(ValueError, match="pet_channel 2 is not a channel of an input with 2"):
        enc(_pet_image(_two_blobs()), _clicks(tumor=[(8, 8, 8)]))
    with pytest.raises(ValueError, match="reads the PET channel"):
        enc.encode(np.array([[8.0, 8.0, 8.0]]), SHAPE, (1.0, 1.0, 1.0), torch.device("cpu"))


def test_uptake_flood_fill_equals_cc3d_components():
    """The device path (flood fill, used on CUDA) finds the same components as cc3d (the CPU path)."""
    from scipy.ndimage import gaussian_filter

    from petclick.clicks.encoding import component_at_cc3d, component_at_flood

    rng = np.random.default_rng(3)
    boxes = np.stack([gaussian_filter(rng.random((17, 15, 13)), 1.2) for _ in range(6)])
    candidate = torch.from_numpy(boxes > np.median(boxes, axis=(1, 2, 3), keepdims=True))
    seed = (8, 7, 6)
    a, b = component_at_cc3d(candidate, seed), component_at_flood(candidate, seed)
    assert torch.equal(a, b) and a.any() and not a.all()
