"""The run plan (petclick.training.plan): the cache follows the available memory (the probe patched),
a disk cache past it, compact sampler indices, the validation subset, schedule and score, `petclick plan`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from petclick.training import plan as planmod
from petclick.training.plan import GB, StepTimes, case_bytes, plan_cache, plan_validation

DATA = {"cache_rate": "auto", "cache_dtype": "auto", "cache_memory_fraction": 0.5}
VOX = 37e6  # a 400x400x326 case, body-cropped


def test_cache_plan_follows_the_available_memory():
    f32, f16 = case_bytes(VOX, "float32"), case_bytes(VOX, "float16")
    assert 2 * 4 * VOX < f32 < 2 * 4 * VOX + VOX + 4 * (planmod.INDEX_SAMPLES + 0.005 * VOX) + 2**20
    big = plan_cache(DATA, 100, VOX, available=int(2.2 * 100 * f32))
    assert (big.dtype, big.ram_cases, big.cache_rate, big.disk_cases) == ("float32", 100, 1.0, 0)
    mid = plan_cache(DATA, 100, VOX, available=int(2.2 * 100 * f16))
    assert (mid.dtype, mid.ram_cases, mid.disk_cases) == ("float16", 100, 0)
    small = plan_cache(DATA, 100, VOX, available=40 * f16, cache_dir="/tmp/c")
    assert small.dtype == "float16" and small.ram_cases == 20 and small.disk_cases == 80 and small.uncached == 0
    assert small.ram_bytes <= small.budget_bytes and small.disk_bytes == 80 * f16
    no_disk = plan_cache(DATA, 100, VOX, available=40 * f16, cache_dir=None)
    assert no_disk.disk_cases == 0 and no_disk.uncached == 80
    # four ranks on the node share the budget; the validation cache comes out of it first
    shared = plan_cache(DATA, 100, VOX, available=int(2.2 * 100 * f16), ranks=4, n_val=10, val_voxels=VOX,
                        val_pet_voxels=52e6)
    assert shared.budget_bytes == int(2.2 * 100 * f16 * 0.5 / 4) and shared.val_bytes > 10 * 2 * 4 * VOX
    assert shared.ram_cases == (shared.budget_bytes - shared.val_bytes) // shared.case_bytes
    # explicit values are kept
    fixed = plan_cache({**DATA, "cache_rate": 0.25, "cache_dtype": "float32"}, 100, VOX, available=GB)
    assert (fixed.dtype, fixed.ram_cases) == ("float32", 25) and "set" in fixed.reason


def test_fold_cache_plan_probes_memory_and_caches_to_disk(tiny_cohort, monkeypatch, tmp_path):
    from torch.utils.data import ConcatDataset

    from petclick.config.presets import get_preset
    from petclick.training.data import fold_cache_plan, fold_files, train_dataset, val_dataset

    cfg = get_preset("demo")
    cfg["data"].update(spacing=None, cache_dir=str(tmp_path / "cache"))
    cfg["network"]["kwargs"] = {"init_filters": 4}
    files = fold_files(tiny_cohort, tiny_cohort.parent, 0)
    monkeypatch.setattr(planmod, "available_memory", lambda: 64 * GB)
    roomy = fold_cache_plan(cfg, files.train, files.val)
    assert roomy.dtype == "float32" and roomy.ram_cases == len(files.train) and roomy.available_bytes == 64 * GB
    per = case_bytes(48 * 48 * 64 * planmod.BODY_FRACTION, "float16")
    monkeypatch.setattr(planmod, "available_memory", lambda: int((2 * per + roomy.val_bytes) / 0.6) + 10)
    tight = fold_cache_plan(cfg, files.train, files.val)
    assert tight.dtype == "float16" and tight.ram_cases == 2 and tight.disk_cases == len(files.train) - 2
    ds = train_dataset(cfg, files.train, cfg["data"]["roi"], plan=tight)
    assert isinstance(ds, ConcatDataset) and len(ds) == len(files.train)
    patches = [ds[i] for i in range(2, len(ds))][-1]  # disk-cached cases: preprocessed once (first pass), stored
    assert len(list((tmp_path / "cache").glob("*.pt"))) == len(files.train) - 2
    assert patches[0]["image"].shape[1:] == tuple(cfg["data"]["roi"]) and patches[0]["image"].dtype == torch.float32
    val = val_dataset(cfg, files.val, tight)
    item = val[0]
    assert item["image"].dtype == torch.float16 and item["label_mask"].dtype == np.uint8
    assert item["label_mask"].shape == tuple(int(s) for s in item["pet_shape"])


def test_posneg_indices_are_compact_int32():
    from petclick.training.sampling import BODY_SAMPLES, PosNegIndicesd

    img = torch.zeros(2, 60, 60, 40)
    img[0, 5:55, 5:55, :] = 0.5
    label = torch.zeros(1, 60, 60, 40)
    label[0, 20:24, 20:24, 10:13] = 1
    out = PosNegIndicesd("label", "image", seed=3)({"image": img, "label": label})
    fg, bg = out["label_fg_indices"], out["label_bg_indices"]
    assert fg.dtype == np.int32 and bg.dtype == np.int32 and fg.size == 48 and bg.size == BODY_SAMPLES
    flat_label = label[0].numpy().ravel()
    assert (flat_label[fg] == 1).all() and (flat_label[bg] == 0).all() and (img[0].numpy().ravel()[bg] > 0).all()
    again = PosNegIndicesd("label", "image", seed=3)({"image": img, "label": label})
    np.testing.assert_array_equal(again["label_bg_indices"], bg)  # deterministic: safe to cache


def test_validation_subset_is_fixed_and_tracer_balanced():
    from petclick.training.data import rank_share, validation_subset

    files = [{"case": f"fdg_p{i}_2020"} for i in range(30)] + [{"case": f"psma_q{i}_2020"} for i in range(6)]
    sub = validation_subset(files, 10, seed=1)
    assert len(sub) == 10 and sum(f["case"].startswith("psma") for f in sub) == 5
    assert sub == validation_subset(files, 10, seed=1) and validation_subset(files, None) == files
    assert [f["case"] for f in sub] == sorted((f["case"] for f in sub), key=[g["case"] for g in files].index)
    shares = [rank_share(sub, r, 3) for r in range(3)]
    assert sorted(x["case"] for s in shares for x in s) == sorted(x["case"] for x in sub)


def test_validation_schedule_stays_within_its_share_of_training_time():
    tr = {"val_every": "auto", "val_fraction": 0.15}
    # the case: 39 epochs of 1,290 steps at 0.31 s, 320 validation cases at 3 passes of 1.34 s
    old_cost = plan_validation({"val_every": 1}, 39, 1290, 0.31, 320, 4.0)
    assert old_cost.fraction > 2.5
    p = plan_validation(tr, 39, 1290, 0.31, 64, 4.0)
    assert p.fraction <= 0.15 and p.validations >= 5 and p.val_every == math.ceil(39 / p.validations)
    eight = plan_validation(tr, 39, 162, 0.31, 64, 4.0, ranks=8)  # 8 ranks share the cases and the steps
    assert eight.cases_per_rank == 8 and eight.fraction <= 0.15
    tiny = plan_validation(tr, 3, 1, 0.1, 64, 40.0)
    assert tiny.validations == 1 and tiny.val_every == 3  # at least the final validation


def test_score_counts_false_positives_on_lesion_free_cases():
    from petclick.training.validation import summarize

    nan = float("nan")
    rows = [{"case": "a", "step": 0, "dice": 0.8, "fpv_ml": 0.0, "fnv_ml": 1.0},
            {"case": "b", "step": 0, "dice": nan, "fpv_ml": 0.0, "fnv_ml": 0.0},
            {"case": "c", "step": 0, "dice": nan, "fpv_ml": 9.0, "fnv_ml": 0.0}]
    m = summarize(rows, [0])
    assert m["score"] == pytest.approx((0.8 + 1.0 + 0.1) / 3) and m["n_positive"] == 1 and m["n_cases"] == 3
    assert summarize(rows, [0], "dice")["score"] == pytest.approx(0.8)
    painted = [dict(r, fpv_ml=50.0) if r["case"] != "a" else r for r in rows]
    assert summarize(painted, [0])["score"] < m["score"]  # painting negative studies costs the score


def test_plan_command_prints_the_plan(tiny_cohort, monkeypatch, capsys):
    import json

    from petclick.cli import main

    monkeypatch.setattr(planmod, "available_memory", lambda: 128 * GB)
    assert main(["plan", "--datalist", str(tiny_cohort), "--gpus", "2", "--step-s", "0.5", "--pass-s", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 GPU(s)" in out and "step times: 0.500 s per step (given on the command line)" in out
    assert "RAM per rank" in out and "validations of" in out and "collective timeout" in out
    assert main(["plan", "--datalist", str(tiny_cohort), "--json", "--ram-gb", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cache"]["available_bytes"] == GB and data["validation"]["fraction"] <= 0.15
    assert data["times_source"].startswith("recorded: one H100")
    assert main(["plan", "--datalist", str(tiny_cohort.parent / "nope.json")]) == 2


def test_autorunner_bundles_take_val_every_from_the_plan():
    from pathlib import Path

    from petclick.auto3dseg.algo import derive_from_data, merged_config
    from petclick.core.yamlio import read_yaml

    template = read_yaml(Path(__file__).resolve().parent.parent / "petclick" / "bundles" / "segresnet" / "configs"
                         / "hyper_parameters.yaml")
    cfg = merged_config(template, {"preset": "autopet"}, "segresnet")
    same = {"median": [2.04, 2.04, 3.0], "min": [2.04, 2.04, 3.0], "max": [2.04, 2.04, 3.0]}
    stats = {"stats_summary": {"image_stats": {"spacing": same, "shape": {"median": [400, 400, 326]}}}}
    one = derive_from_data(cfg, stats, 1290, 321, gpus=1)
    v = one["plan"]["validation"]
    assert one["training"]["num_epochs"] == 39 and one["training"]["val_every"] == v["val_every"] > 1
    assert v["cases"] == 64 and v["fraction"] <= 0.15 and "H100" in one["plan"]["times_source"]
    eight = derive_from_data(cfg, stats, 1290, 321, gpus=8)
    assert eight["plan"]["validation"]["cases_per_rank"] == 8 and eight["plan"]["validation"]["fraction"] <= 0.15


def test_each_rank_takes_its_gpu_its_threads_and_a_planned_timeout(monkeypatch):
    from petclick.training import threads
    from petclick.training.distributed import rank_device
    from petclick.training.plan import cache_threads, dist_timeout_s

    assert rank_device("cuda", local_rank=3) == torch.device("cuda", 3)      # training.device: cuda -> its own GPU
    assert rank_device("cuda:1", local_rank=3) == torch.device("cuda", 1)    # an explicit index is kept
    assert rank_device("cpu", local_rank=3) == torch.device("cpu")
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads.resolve_threads("auto", workers=1) == 3                   # 16 cores / 4 ranks - 1 worker
    assert threads.resolve_threads(6, workers=1) == 6
    assert cache_threads(4) == 1 and cache_threads(4, ranks=1) == 4
    assert dist_timeout_s({"dist_timeout_s": "auto"}, validation_s=100) == 1800
    assert dist_timeout_s({"dist_timeout_s": "auto"}, validation_s=3000) == 6000
    assert dist_timeout_s({"dist_timeout_s": 900}, validation_s=3000) == 900


# ---------------------------------------------------------------------------- ROI and batch from GPU memory
def _autopet_cfg():
    from pathlib import Path

    from petclick.auto3dseg.algo import merged_config
    from petclick.core.yamlio import read_yaml

    template = read_yaml(Path(__file__).resolve().parent.parent / "petclick" / "bundles" / "segresnet" / "configs"
                         / "hyper_parameters.yaml")
    return merged_config(template, {"preset": "autopet"}, "segresnet")


#: The autopet segresnet's footprint as gpuplan.footprint measures it (1908.5 saved bytes per voxel, the largest
#: activation 128, 87.2 M parameters; measured on this CPU, 2026-12-08): patched in so that these tests do not
#: spend 10-30 s measuring the full-size network.
AUTOPET_FOOTPRINT = dict(act_per_voxel=1908.5, const_bytes=95_232, peak_per_voxel=128.0, params=87_166_308,
                         probe_rois=((32, 32, 32), (48, 48, 48)))


def test_gpu_plan_keeps_shrinks_or_refuses_the_roi_by_free_memory(monkeypatch):
    from petclick.core.errors import InputError
    from petclick.training import gpuplan
    from petclick.training.gpuplan import Footprint, GpuInfo, plan_gpu, step_bytes

    monkeypatch.setattr(gpuplan, "footprint", lambda cfg: Footprint(**AUTOPET_FOOTPRINT))
    cfg = _autopet_cfg()
    fp = Footprint(**AUTOPET_FOOTPRINT)
    big = plan_gpu(cfg, probe=[GpuInfo(0, "H100", 80 * GB, 80 * GB)])
    assert big.roi == [192, 192, 384] and big.batch_size == 1 and "configured ROI fits" in big.reason
    assert big.step_bytes == step_bytes(fp, [192, 192, 384], 2) <= big.budget_bytes == int(0.85 * 80 * GB)
    # 12 GB free: a smaller ROI, every axis a multiple of segresnet's 16, the largest that fits, proportions kept
    small = plan_gpu(cfg, probe=[GpuInfo(0, "H100", 80 * GB, 80 * GB), GpuInfo(1, "busy", 12 * GB, 80 * GB)], gpus=2)
    assert small.gpu.startswith("cuda:1") and all(r % 16 == 0 for r in small.roi)
    assert math.prod(small.roi) < math.prod([192, 192, 384]) and small.step_bytes <= small.budget_bytes
    assert small.roi[2] > small.roi[0] == small.roi[1] and small.roi[0] >= 96
    bigger = [r + 16 for r in small.roi]
    assert step_bytes(fp, bigger, 2, ranks=2) > small.budget_bytes  # one divisor more on every axis does not fit
    # the one GPU figure on record: 25.2 GB for one 192x192x320 sample on an H100 (docs/benchmarks/networks.md)
    assert step_bytes(fp, [192, 192, 320], 1) / GB == pytest.approx(25.2, rel=0.02)
    # a batch may grow when max_batch_size allows it: 96x96x192 patches, 2 crops each, fit 8 times in 68 GB
    cfg["data"].update(max_batch_size=4, roi=[96, 96, 192])
    assert plan_gpu(cfg, probe=[GpuInfo(0, "H100", 80 * GB, 80 * GB)]).batch_size == 4
    cfg["data"].update(max_batch_size=None, roi=[192, 192, 384])
    # too little memory: refused, naming what to set
    with pytest.raises(InputError, match="data.roi.*init_filters.*gpu_memory_fraction"):
        plan_gpu(cfg, probe=[GpuInfo(0, "small", 3 * GB, 4 * GB)])
    cfg["data"]["gpu_memory_fraction"] = None  # not probed: ROI and batch as set
    assert plan_gpu(cfg, probe=[GpuInfo(0, "small", 3 * GB, 4 * GB)]) is None


def test_activation_footprint_is_measured_and_scales_with_voxels():
    import torch

    from petclick.networks.factory import build_network
    from petclick.training.gpuplan import _measure, _saved

    kwargs = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
    import json as _json

    fp = _measure("segresnet", _json.dumps(kwargs, sort_keys=True), 4, 0)
    assert fp.params > 0 and fp.act_per_voxel > 4 * 4  # at least the input and one feature map per voxel
    torch.manual_seed(0)
    model = build_network("segresnet", 4, 1, **kwargs).train()
    saved, largest = _saved(model, 4, (64, 32, 48))  # a third ROI: the linear model predicts it
    assert saved == pytest.approx(fp.const_bytes + fp.act_per_voxel * 64 * 32 * 48, rel=0.02)
    assert largest / (64 * 32 * 48) == pytest.approx(fp.peak_per_voxel, rel=0.01)  # 4 filters x 4 bytes or more


def test_bundles_and_plan_command_take_the_gpu_plan(tiny_cohort, monkeypatch, capsys):
    from petclick.auto3dseg.algo import derive_from_data
    from petclick.cli import main
    from petclick.training import gpuplan
    from petclick.training.gpuplan import Footprint, GpuInfo

    monkeypatch.setattr(gpuplan, "footprint", lambda cfg: Footprint(**AUTOPET_FOOTPRINT))
    cfg = _autopet_cfg()
    same = {"median": [2.04, 2.04, 3.0], "min": [2.04, 2.04, 3.0], "max": [2.04, 2.04, 3.0]}
    stats = {"stats_summary": {"image_stats": {"spacing": same, "shape": {"median": [400, 400, 326]}}}}
    monkeypatch.setattr(gpuplan, "gpu_memory", lambda indices=None: [])
    none = derive_from_data(cfg, stats, 1290, 321)
    assert none["data"]["roi"] == [192, 192, 320] and "none found" in none["plan"]["gpu"]["none"]
    monkeypatch.setattr(gpuplan, "gpu_memory", lambda indices=None: [GpuInfo(0, "L4", 12 * GB, 24 * GB)])
    fitted = derive_from_data(cfg, stats, 1290, 321)
    assert fitted["data"]["roi"] == fitted["plan"]["gpu"]["roi"] and math.prod(fitted["data"]["roi"]) < 192 * 192 * 320
    assert fitted["plan"]["gpu"]["gpu"] == "cuda:0 (L4)"
    monkeypatch.setattr(planmod, "available_memory", lambda: 128 * GB)
    assert main(["plan", "--datalist", str(tiny_cohort), "--gpu-gb", "12"]) == 0
    out = capsys.readouterr().out
    assert "GPU cuda:0 (given with --gpu-gb): 12.0 GB free" in out and "needs" in out
    monkeypatch.setattr(gpuplan, "gpu_memory", lambda indices=None: [])
    assert main(["plan", "--datalist", str(tiny_cohort)]) == 0
    assert "GPU: none found on this machine: the preset's ROI 192x192x384" in capsys.readouterr().out


def test_cache_fill_is_planned_per_case_and_its_threads_fit_the_memory():
    from petclick.training.plan import fitting_threads, load_bytes, preprocess_bytes, preprocess_peaks

    as_is = preprocess_peaks((400, 400, 326), (2.04, 2.04, 3.0), [2.04, 2.04, 3.0])
    assert as_is == (0, 24 * 400 * 400 * 326)                       # not resampled: the chain's 24 bytes per voxel
    long = preprocess_peaks((400, 400, 600), (2.04, 2.04, 2.0), [2.04, 2.04, 3.0])
    assert long == (12 * 400 * 400 * 600 + 40 * 400 * 400 * 400, 24 * 400 * 400 * 400)
    val = preprocess_peaks((400, 400, 600), (2.04, 2.04, 2.0), [2.04, 2.04, 3.0], validation=True)
    assert val[0] < long[0] and preprocess_bytes((400, 400, 600), (2.04, 2.04, 2.0), [2.04, 2.04, 3.0]) == long[0]
    # one case resamples at a time: the largest resampling beside the other threads' largest cases
    assert load_bytes([long, as_is, as_is], 2) == long[0] + as_is[1]
    assert load_bytes([long, as_is, as_is], 3) == long[0] + 2 * as_is[1]
    assert load_bytes([as_is, as_is], 2) == 2 * as_is[1] and load_bytes([long], 4) == long[0]
    # threads are cut until the fill fits the headroom
    loads = [long] + [as_is] * 10
    assert fitting_threads(4, loads, 100 * GB) == 4
    assert fitting_threads(4, loads, long[0] + as_is[1] + 1) == 2 and fitting_threads(4, loads, 1) == 1
    data = {**DATA, "num_workers": 4}
    roomy = plan_cache(data, 10, VOX, available=400 * GB, case_loads=loads)
    tight = plan_cache(data, 10, VOX, available=int(10 * case_bytes(VOX, "float32") / 0.5) + 3 * GB, case_loads=loads)
    assert roomy.threads == 4 and roomy.load_bytes == long[0] + 3 * as_is[1]
    assert tight.ram_cases == 10 and tight.threads == 2 and tight.load_bytes == load_bytes(loads, 2)
