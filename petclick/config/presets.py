"""Hyper-parameter presets: `autopet` (full size, GPU) and `demo` (tiny, a 2-core CPU in minutes).

A preset is a nested mapping in the layout of a bundle's `configs/hyper_parameters.yaml`
(sections network, data, augment, clicks, training, infer). These are the values shared by every
network; a bundle's template adds its own per-preset values (network kwargs, ROI) under
`presets: {demo: ..., autopet: ...}` and input.yaml overrides everything (see config.py).
"""

from __future__ import annotations

import copy
from typing import Any

from petclick.core.errors import InputError

#: The challenge's click budget: up to 10 tumour and 10 background clicks (steps k = 0..10).
MAX_CLICKS = 10
#: The click encoding of a config or checkpoint that names none (petclick.clicks.encoding reads it).
DEFAULT_ENCODING: dict[str, Any] = {"encoding": "edt", "channels": "two"}
#: Click settings shared by both presets (clicks issue defaults: `log` count, `edt` encoding).
CLICKS: dict[str, Any] = {
    "max_clicks": MAX_CLICKS,
    "curriculum": {"count": "log", "paired": False, "samplers": {"official": 0.8, "interior": 0.2},
                   "background": "case"},  # background clicks over the whole case's p99.75 region, as the official rule
    "encoding": dict(DEFAULT_ENCODING),
    "val_steps": [0, 5, 10],
}

AUTOPET: dict[str, Any] = {
    "network": {"name": "segresnet", "kwargs": {},
                "output_prior": None,        # foreground prior p: output bias starts at logit(p) (None: stock init)
                "organ_head": None},         # organ supervision {labels: [...], weight: w} (None: no organ head)
    "data": {
        "spacing": "auto",           # auto: the analysed median spacing, no resampling when all cases share it
        "ct_window": [-250.0, 250.0],  # HU -> [0, 1]
        "pet_clip": [0.0, 10.0],      # SUV -> [0, 1]
        "pet_scale": "linear",        # linear | log (petclick.runtime.petscale)
        "roi": [192, 192, 384],       # shrunk to the data and rounded to the network's divisor
        "sampler": "posneg",          # patch centres: posneg | uptake (petclick.training.sampling)
        "pos": 1.0, "neg": 1.0,       # posneg: RandCropByPosNegLabeld foreground oversampling
        "sampler_ratios": [1.0, 1.0, 1.0],  # uptake: weights of lesion, hot non-lesion and body centres
        "num_crops": 2,               # patches per loaded image (the batch holds batch_size * num_crops)
        "batch_size": 1,
        "cache_rate": "auto",         # fraction of training cases cached in RAM (auto: what fits, petclick.training.plan)
        "cache_dtype": "auto",        # float32 | float16 | auto (float32 when every case fits, else float16)
        "cache_memory_fraction": 0.6,  # share of the available RAM (psutil) the caches may take, all ranks of a node
        "cache_dir": "auto",          # disk cache (MONAI PersistentDataset) of the cases past RAM; auto: <work_dir>/cache,
                                      # null: those cases are preprocessed at every load
        "num_workers": 4,
        "gpu_memory_fraction": 0.85,  # with a GPU: the largest ROI (<= roi) and batch whose training step fits this share
                                      # of its free memory (petclick.training.gpuplan); null: roi and batch as set
        "max_batch_size": None,       # the GPU plan may raise batch_size up to this (None: batch_size stays)
        "batch_transforms": True,     # intensity augmentation and click encoding on the batch, on the device
    },
    "augment": {
        "prob": 0.2, "rotate_deg": 15.0, "scale": 0.15, "flip_prob": 0.5,
        "smooth_sigma": [0.5, 1.0], "noise_std": 0.05, "shift": 0.1, "scale_intensity": 0.1,
    },
    # the click's uptake region as input (issue 26, benchmarks/bench_quality.py --scale mid: network alone
    # 3.27 against edt's 2.68 Dice AUC, the shipped masks 3.25 against 2.96; docs/benchmarks/quality.md)
    "clicks": {**copy.deepcopy(CLICKS), "encoding": {**DEFAULT_ENCODING, "encoding": "uptake", "radius": 5,
                                                      "uptake_radius": 15, "uptake_fraction": 0.41}},
    "training": {
        "num_epochs": "auto",          # auto: target_iterations / iterations per epoch, within [20, 1000]
        "target_iterations": 50000,
        "num_iterations_per_epoch": None,  # None: one pass over the fold's training images
        "lr": 2e-4, "weight_decay": 1e-5, "warmup_epochs": 3,
        "amp": True,                   # autocast: float16 on CUDA, bfloat16 on a CPU with native bfloat16
        "channels_last": False,        # channels_last_3d memory format for the network and its input
        "num_threads": "auto",         # torch CPU threads (auto: the cores this process may use, minus loader workers)
        "repeats": "independent",      # how a fold's repeats relate: independent | snapshot | warmstart
        "cycle_epochs": None,          # snapshot/warmstart: epochs of each repeat after the first (None: num_epochs)
        "val_every": "auto",           # auto: as many validations as fit training.val_fraction (petclick.training.plan)
        "val_fraction": 0.15,          # val_every auto: validation time at most this share of the training time
        "val_cases": 64,               # a fixed tracer-balanced subset of the fold's validation cases (null: all)
        "val_score": "dice_fpv",       # selection score: dice_fpv (Dice on lesion cases, 1/(1+FP mL) on lesion-free
                                       # ones, case-weighted) | dice (lesion cases only)
        "dist_timeout_s": "auto",      # collective timeout under torchrun (auto: from the plan, at least 1800 s)
        "ds_weights": "halving",       # deep-supervision weights 1/2^i
        "loss_weights": {"dice": 1.0, "ce": 1.0},  # Dice-CE: weights of the Dice and cross-entropy terms
        "empty_dice": "ignore",        # a batch without lesion voxels: CE only (ignore) or Dice too (count);
                                       # `count` collapses the network to predicting nothing (petclick.training.loss)
        "seed": 0,
        "grad_clip": 12.0,
        "device": None,                # null: cuda when available, else cpu (inference.yaml's `device` is inference's)
        "time_budget_s": None,         # seconds for this fold's training, this process's start included: the
                                       # iterations per epoch are sized to it (petclick.training.budget); null: the recipe's
        "time_budget_max_scale": 1.0,  # a budget never trains more than this multiple of the recipe's iterations
    },
    # backend auto: ONNX Runtime on CPU (1.17x faster at float32 idle, 2.1-3.5x when the CPU is shared),
    # PyTorch on GPU; the GPU options
    # (channels_last, compile, cudnn_benchmark) wait for benchmarks/bench_pass.py on a GPU
    "infer": {"roi": None, "overlap": 0.625, "sw_batch_size": 1, "mode": "gaussian", "amp": True,
              "backend": "auto", "channels_last": False, "compile": "none", "cudnn_benchmark": False,
              "incremental": "exact",        # re-inference after clicks: naive | exact | local (petclick.inference.engine)
              "tile_cache_mb": "auto",       # exact mode's tile cache MB (past it: recompute); auto: one pass of every
                                             # checkpoint's tiles if half the device's memory holds it, else refused
              "local_window": 1.0,           # local mode's window per click, as a fraction of the ROI per axis
              "local_update": "replace",     # local mode blends in: replace (crop probabilities) | delta (their change)
              "local_max_grow": 3},          # local mode's widenings per click when the mask changes at a window's side
}

DEMO: dict[str, Any] = copy.deepcopy(AUTOPET)
DEMO["clicks"]["encoding"] = dict(DEFAULT_ENCODING)  # edt: at 17 mm voxels the uptake region is the click's ball
DEMO["data"].update({"roi": [32, 32, 48], "num_crops": 2, "batch_size": 1, "num_workers": 0})
DEMO["augment"].update({"prob": 0.15})
DEMO["network"]["output_prior"] = 0.007   # output bias logit(0.007) ~ -5: without it 12-80 CPU iterations predict nothing
# issue 13's recipe (chosen on the validation folds, benchmarks/bench_quality.py --split validation): per
# fold one snapshot run, a 720-iteration first cycle then 3 cycles of 32, each ending at lr 0 (5 folds x 4
# cycle ends = 20 checkpoints, 816 iterations per fold); float32 (bfloat16 autocast trained worse models on
# this CPU) in channels_last_3d memory
DEMO["training"].update({"repeats": "snapshot", "num_epochs": 45, "cycle_epochs": 2,
                         "num_iterations_per_epoch": 16, "lr": 5e-3, "warmup_epochs": 0, "val_every": 15,
                         "amp": False, "channels_last": True})
DEMO["infer"].update({"roi": [64, 64, 96], "overlap": 0.25, "amp": False})

PRESETS: dict[str, dict[str, Any]] = {"autopet": AUTOPET, "demo": DEMO}


def get_preset(name: str) -> dict[str, Any]:
    """A deep copy of preset `name` ("demo" or "autopet"); anything else raises InputError."""
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise InputError("input.yaml preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[key])
