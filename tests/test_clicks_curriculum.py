"""Click curricula: count distributions, pairing, location samplers and the MONAI transform."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Flipd
from scipy import ndimage

from petclick.clicks.click_curriculum import ClickCurriculum, count_distribution, high_uptake_mask
from petclick.clicks.curriculum import SimulateTrainingClicks, SimulateTrainingClicksd

SHAPE = (40, 40, 32)
N_DRAWS = 20_000
WEIGHTS = [0.10, 0.10, 0.10, 0.08, 0.04, 0.04, 0.04, 0.04, 0.08, 0.08, 0.30]


def sphere(shape, centre, radius):
    grid = np.indices(shape)
    return ((grid - np.array(centre)[:, None, None, None]) ** 2).sum(0) <= radius ** 2


def case(seed=0):
    rng = np.random.default_rng(seed)
    label = sphere(SHAPE, (12, 12, 10), 6) | sphere(SHAPE, (28, 30, 22), 3)
    pet = rng.normal(1.0, 0.1, SHAPE).astype(np.float32)
    pet[label] += 4.0
    pet[30:36, 4:10, 4:10] = np.linspace(5.0, 6.0, 216).reshape(6, 6, 6)  # physiological hot spot
    return label.astype(np.float32), pet


def frequencies(counts, n=11):
    return np.bincount(np.asarray(counts), minlength=n) / len(counts)


def test_count_presets():
    log = np.log(np.linspace(2, 12, 11))[::-1]
    np.testing.assert_allclose(count_distribution("log"), log / log.sum())
    assert count_distribution("log")[0] > count_distribution("log")[10]
    np.testing.assert_allclose(count_distribution("uniform"), np.full(11, 1 / 11))
    np.testing.assert_array_equal(count_distribution("full"), np.eye(11)[10])
    np.testing.assert_allclose(count_distribution(WEIGHTS), np.array(WEIGHTS) / sum(WEIGHTS))
    np.testing.assert_allclose(count_distribution([1, 1, 2], max_clicks=2), [0.25, 0.25, 0.5])


@pytest.mark.parametrize("count", ["log", "uniform", WEIGHTS])
def test_count_frequencies_over_many_draws(count):
    cur = ClickCurriculum.from_config({"count": count, "paired": False})
    rng = np.random.default_rng(1)
    draws = np.array([cur.sample_counts(rng) for _ in range(N_DRAWS)])
    target = count_distribution(count)
    tol = 4 * np.sqrt(target * (1 - target) / N_DRAWS) + 1e-3
    assert np.all(np.abs(frequencies(draws[:, 0]) - target) <= tol)
    assert np.all(np.abs(frequencies(draws[:, 1]) - target) <= tol)
    same = np.mean(draws[:, 0] == draws[:, 1])  # independent: P(equal) = sum p_k^2
    assert abs(same - np.sum(target ** 2)) < 0.02


def test_paired_and_full():
    rng = np.random.default_rng(2)
    paired = ClickCurriculum.from_config({"count": "log", "paired": True})
    draws = np.array([paired.sample_counts(rng) for _ in range(N_DRAWS)])
    assert np.all(draws[:, 0] == draws[:, 1])
    target = count_distribution("log")
    assert np.all(np.abs(frequencies(draws[:, 0]) - target) <= 4 * np.sqrt(target * (1 - target) / N_DRAWS) + 1e-3)
    full = ClickCurriculum.from_config({"count": "full"})
    assert {full.sample_counts(rng) for _ in range(50)} == {(10, 10)}


@pytest.mark.parametrize("config, message", [
    ({"count": [0.1] * 10}, "11 values"),
    ({"count": [0.1] * 10 + [-0.1]}, "non-negative"),
    ({"count": [0] * 11}, "all be zero"),
    ({"count": "exponential"}, "unknown count preset"),
    ({"count": ["a"] * 11}, "count"),
    ({"samplers": {"official": 0.5, "random": 0.5}}, "unknown sampler"),
    ({"samplers": {"official": -1, "interior": 2}}, "non-negative"),
    ({"samplers": {}}, "samplers"),
    ({"paired": "yes"}, "paired"),
    ({"interior_power": -1}, "interior_power"),
    ({"counts": "log"}, "unknown key"),
])
def test_bad_config(config, message):
    with pytest.raises(ValueError, match=message):
        ClickCurriculum.from_config(config)


def test_official_sampler_follows_the_rule_on_the_patch():
    label, pet = case()
    cur = ClickCurriculum.from_config({"count": "full", "samplers": {"official": 1.0}})
    clicks = cur.sample_clicks(label, pet, np.random.default_rng(0), counts=(4, 3))
    tumor, background = clicks["tumor"], clicks["background"]
    assert tumor.shape == (4, 3) and background.shape == (3, 3) and tumor.dtype == np.float64
    assert {tuple(p) for p in tumor[:2]} == {(12.0, 12.0, 10.0), (28.0, 30.0, 22.0)}  # the two sphere centres
    edt = ndimage.distance_transform_edt(label)
    assert all(edt[tuple(p)] == 1.0 for p in tumor[2:].astype(int))  # then boundary clicks
    hot = high_uptake_mask(pet, label > 0)
    assert all(hot[tuple(p)] for p in background.astype(int))
    assert np.all((background[:, 0] >= 30) & (background[:, 1] < 10))


def test_interior_density_rises_towards_the_core():
    label, pet = case()
    cur = ClickCurriculum.from_config({"count": "full", "samplers": {"interior": 1.0}})
    rng = np.random.default_rng(3)
    points = np.concatenate([cur.sample_clicks(label, pet, rng)["tumor"] for _ in range(60)]).astype(int)
    edt = ndimage.distance_transform_edt(label)
    sampled = edt[tuple(points.T)]
    assert np.all(sampled > 0)                               # every click inside a lesion
    assert sampled.mean() > edt[label > 0].mean() + 0.5      # denser towards the core
    flat = ClickCurriculum.from_config({"count": "full", "samplers": {"interior": 1.0}, "interior_power": 0})
    uniform = np.concatenate([flat.sample_clicks(label, pet, rng)["tumor"] for _ in range(60)]).astype(int)
    assert edt[tuple(uniform.T)].mean() < sampled.mean()
    big = sphere(SHAPE, (12, 12, 10), 6)
    share_big = np.mean(big[tuple(points.T)])                 # components drawn by volume: 925 vs 123 voxels
    assert 0.8 < share_big < 0.95


def test_mixed_samplers_and_empty_regions():
    label, pet = case()
    cur = ClickCurriculum.from_config({"count": "full", "samplers": {"official": 0.5, "interior": 0.5}})
    rng = np.random.default_rng(4)
    for _ in range(5):
        clicks = cur.sample_clicks(label, pet, rng)
        assert clicks["tumor"].shape == (10, 3) and all(label[tuple(p)] for p in clicks["tumor"].astype(int))
    empty = cur.sample_clicks(np.zeros(SHAPE, np.float32), pet, rng)
    assert empty["tumor"].shape == (0, 3) and empty["background"].shape == (10, 3)
    none = ClickCurriculum.from_config({"count": [1] + [0] * 10}).sample_clicks(label, pet, rng)
    assert none["tumor"].shape == (0, 3) and none["background"].shape == (0, 3)


def test_clipped_pet_still_gives_background_clicks():
    label, pet = case()
    clipped = np.clip(pet, 0, 2.0)  # the top 0.25 % ties at the clip value
    cur = ClickCurriculum.from_config({"count": "full"})
    clicks = cur.sample_clicks(label, clipped, np.random.default_rng(0))
    assert clicks["background"].shape == (10, 3)
    assert all(clipped[tuple(p)] == 2.0 and not label[tuple(p)] for p in clicks["background"].astype(int))


def data(label, pet):
    ct = np.zeros(SHAPE, np.float32)
    ct[2:6, 30:36, 20:26] = 50.0  # a CT hot spot the PET channel must not be confused with
    image = MetaTensor(torch.from_numpy(np.stack([ct, pet])), affine=torch.eye(4))
    return {"image": image, "label": MetaTensor(torch.from_numpy(label)[None], affine=torch.eye(4))}


def test_transform_is_deterministic_given_the_seed():
    label, pet = case()
    t1 = SimulateTrainingClicksd(curriculum={"count": "uniform"}).set_random_state(11)
    t2 = SimulateTrainingClicksd(curriculum=ClickCurriculum.from_config({"count": "uniform"})).set_random_state(11)
    runs1 = [t1(data(label, pet))["clicks"] for _ in range(5)]
    runs2 = [t2(data(label, pet))["clicks"] for _ in range(5)]
    for a, b in zip(runs1, runs2):
        np.testing.assert_array_equal(a["tumor"], b["tumor"])
        np.testing.assert_array_equal(a["background"], b["background"])
    assert len({(len(r["tumor"]), len(r["background"])) for r in runs1}) > 1  # counts vary between calls
    t3 = SimulateTrainingClicksd(curriculum={"count": "uniform"}).set_random_state(12)
    assert any(not np.array_equal(a["tumor"], b["tumor"]) for a, b in zip(runs1, [t3(data(label, pet))["clicks"]
                                                                                 for _ in range(5)]))


def test_transform_reads_the_pet_channel_and_numpy_inputs():
    label, pet = case()
    t = SimulateTrainingClicksd(pet_key=1, curriculum={"count": "full", "samplers": {"official": 1}}).set_random_state(0)
    d = t(data(label, pet))
    bg = d["clicks"]["background"]
    assert bg.shape == (10, 3) and np.all(bg[:, 0] >= 30)  # on the PET hot spot, not the CT one
    assert isinstance(d["image"], MetaTensor) and d["image"].shape == (2, *SHAPE)
    t_np = SimulateTrainingClicksd(pet_key="pet", curriculum={"count": "full"}).set_random_state(0)
    out = t_np({"label": label, "pet": pet})["clicks"]
    assert out["tumor"].shape == (10, 3) and out["tumor"].dtype == np.float64
    with pytest.raises(ValueError, match="channel"):
        SimulateTrainingClicksd(pet_channel=5)(data(label, pet))


def test_clicks_follow_the_augmented_patch():
    label, pet = case()
    chain = Compose([Flipd(keys=["image", "label"], spatial_axis=0),
                     SimulateTrainingClicksd(curriculum={"count": "full", "samplers": {"interior": 1}})])
    chain.set_random_state(5)
    d = chain(data(label, pet))
    flipped = d["label"][0].numpy() > 0.5
    points = d["clicks"]["tumor"].astype(int)
    assert all(flipped[tuple(p)] for p in points) and not all(label[tuple(p)] > 0 for p in points)


def test_array_version_matches_the_dictionary_version():
    label, pet = case()
    config = {"count": "uniform", "paired": True}
    arr = SimulateTrainingClicks(config).set_random_state(9)
    dic = SimulateTrainingClicksd(pet_key="pet", curriculum=config).set_random_state(9)
    for _ in range(4):
        a = arr(torch.from_numpy(label)[None], torch.from_numpy(pet)[None])
        b = dic({"label": label, "pet": pet})["clicks"]
        np.testing.assert_array_equal(a["tumor"], b["tumor"])
        np.testing.assert_array_equal(a["background"], b["background"])
        assert len(a["tumor"]) == len(a["background"])  # paired (both kinds have room for 10 here)
