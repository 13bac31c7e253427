"""Auto3DSeg glue: the BundleAlgo every petclick template uses, and the logic that fills a
template's configs from the data analysis and input.yaml.

A bundle's `scripts/algo.py` is one class: `class SegresnetAlgo(PetclickBundleAlgo): ...`; the
network and its per-preset defaults come from the template's `configs/hyper_parameters.yaml`.

input.yaml keys read here (besides AutoRunner's own):
    preset: demo | autopet          petclick.config.presets (default autopet)
    num_repeats: 4                  seeds per fold, trained in one process; the fold's bundle
                                    ensembles them (5 folds x 4 = 20 checkpoints)
    clicks: {curriculum, encoding, max_clicks, val_steps}   merged into every bundle
    overrides: {section: {key: value}} or {"section#key": value}   every algorithm
    algo_overrides: {<algo>: {...}}  one algorithm only
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Mapping

from monai.apps.auto3dseg import BundleAlgo

from petclick.config.bundle import DEFAULT_PRESET, HYPER, INFERENCE, iterations_per_epoch, validate_config
from petclick.config.presets import get_preset
from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.core.yamlio import apply_overrides, deep_merge, read_yaml, write_yaml

log = logging.getLogger(__name__)
DEFAULT_REPEATS = 4
SPACING_RTOL = 0.01


def merged_config(template: Mapping[str, Any], user: Mapping[str, Any], algo: str) -> dict[str, Any]:
    """Preset <- template sections <- template presets[preset] <- input.yaml (clicks, overrides,
    algo_overrides[algo]); nothing data-derived yet."""
    preset = str(user.get("preset", template.get("preset", DEFAULT_PRESET)))
    cfg = get_preset(preset)
    cfg = deep_merge(cfg, {k: v for k, v in template.items() if k != "presets"})
    cfg = deep_merge(cfg, (template.get("presets") or {}).get(preset, {}))
    if user.get("clicks") is not None:
        if not isinstance(user["clicks"], Mapping):
            raise InputError("input.yaml clicks", "must be a mapping (curriculum, encoding, max_clicks, val_steps)")
        cfg["clicks"] = deep_merge(cfg.get("clicks", {}), user["clicks"])
    cfg = apply_overrides(cfg, user.get("overrides"), "input.yaml overrides")
    cfg = apply_overrides(cfg, (user.get("algo_overrides") or {}).get(algo), f"input.yaml algo_overrides.{algo}")
    cfg["preset"] = preset
    cfg["num_repeats"] = int(user.get("num_repeats", cfg.get("num_repeats", DEFAULT_REPEATS)))
    if cfg["num_repeats"] < 1:
        raise InputError("input.yaml num_repeats", f"must be >= 1, got {cfg['num_repeats']}")
    return cfg


def _summary(stats: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    try:
        return stats["stats_summary"]["image_stats"][key]
    except (KeyError, TypeError) as exc:
        raise InputError("datastats", f"data analysis lacks stats_summary.image_stats.{key}") from exc


def derive_from_data(cfg: dict[str, Any], stats: Mapping[str, Any], n_train: int, n_val: int = 0,
                     gpus: int = 1) -> dict[str, Any]:
    """Resolve `auto` values from MONAI's data analysis: spacing (none when every case shares it),
    ROI shrunk to the data and rounded to the network's divisor, then (with a GPU) the largest ROI and batch
    that fit its free memory (petclick.training.gpuplan), epochs, and the validation interval
    of the run plan (petclick.training.plan: validation within `training.val_fraction` of the training
    time at the preset's recorded step times, for `n_val` validation cases shared by `gpus` ranks)."""
    from petclick.networks.roi import fit_roi

    cfg = dict(cfg)
    data, tr, name = dict(cfg["data"]), dict(cfg["training"]), cfg["network"]["name"]
    kwargs = dict(cfg["network"].get("kwargs") or {})
    sp = _summary(stats, "spacing")
    median_sp = [float(v) for v in sp["median"]]
    if data.get("spacing") == "auto":
        same = all(math.isclose(float(a), float(b), rel_tol=SPACING_RTOL) for a, b in zip(sp["min"], sp["max"]))
        data["spacing"] = None if same else median_sp
    shape = [float(v) for v in _summary(stats, "shape")["median"]]
    if data.get("spacing") is not None:
        shape = [s * o / n for s, o, n in zip(shape, median_sp, data["spacing"])]
    shape = [max(1, int(round(s))) for s in shape]
    data["roi"] = list(fit_roi(data["roi"], shape, name, **kwargs))
    from petclick.training.gpuplan import apply_gpu_plan, no_gpu_line

    gpus = max(1, int(gpus))
    probe_cfg = {**cfg, "data": data, "training": tr}
    gpu = apply_gpu_plan(probe_cfg, gpus)  # the ROI and batch that fit the GPUs' free memory (none: as set)
    data = cfg["data"] = probe_cfg["data"]
    infer = dict(cfg.get("infer") or {})
    if infer.get("roi") is not None:
        infer["roi"] = list(fit_roi(infer["roi"], shape, name, **kwargs))
    iters = iterations_per_epoch(cfg, n_train)
    if tr.get("num_epochs") == "auto":
        tr["num_epochs"] = int(min(1000, max(20, round(int(tr.get("target_iterations", 50000)) / iters))))
    from petclick.training.plan import STEP_TIMES, network_voxels, plan_validation, validation_case_seconds

    times = STEP_TIMES.get(str(cfg.get("preset")), STEP_TIMES["autopet"])
    vox = network_voxels(shape, [1.0, 1.0, 1.0], None, data["roi"])
    n_vals = n_val if tr.get("val_cases") is None else min(n_val, int(tr["val_cases"]))
    case_s = validation_case_seconds(times, vox, len(cfg["clicks"].get("val_steps", [0, 5, 10])))
    vplan = plan_validation(tr, int(tr["num_epochs"]), max(1, -(-iters // gpus)), times.step_s, n_vals, case_s, gpus)
    tr["val_every"] = int(vplan.val_every)
    cfg["plan"] = {"validation": vplan.to_dict(), "gpus": gpus, "times_source": times.source,
                   "gpu": gpu.to_dict() if gpu is not None else {"none": no_gpu_line(probe_cfg)}}
    cfg.update(data=data, training=tr, infer=infer, analysed_shape=shape, analysed_spacing=median_sp)
    return cfg


def _count_train(datalist: Path, fold: int) -> int:
    """Training cases of `fold` by the training loop's own rule (petclick.io.datalist.split_fold)."""
    return _count_split(datalist, fold)[0]


def _count_split(datalist: Path, fold: int) -> tuple[int, int]:
    """(training, validation) cases of `fold` by the training loop's rule (petclick.io.datalist.split_fold)."""
    from petclick.io.datalist import load_datalist, split_fold

    train, val = split_fold(load_datalist(datalist).get("training", []), fold, datalist)
    return len(train), len(val)


def visible_gpus() -> int:
    """GPUs AutoRunner's multi-GPU path would use (torchrun over every visible device), at least 1."""
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no torch CUDA runtime: one process
        return 1


def fill_bundle_config(algo: str, data_stats_filename: str | Path, output_path: str | Path,
                       data_src_cfg: str | Path, fold: int = 0) -> dict[str, Any]:
    """Write the resolved `configs/hyper_parameters.yaml` and `configs/inference.yaml` of a
    generated bundle at `output_path`; returns the fill records (what was resolved)."""
    out = Path(output_path).resolve()
    user = read_yaml(data_src_cfg)
    for key in ("datalist", "dataroot"):
        if key not in user:
            raise InputError(data_src_cfg, f"lacks the {key!r} key")
    template = read_yaml(out / "configs" / HYPER)
    cfg = merged_config(template, user, algo)
    datalist, dataroot = Path(user["datalist"]).resolve(), Path(user["dataroot"]).resolve()
    stats = read_yaml(data_stats_filename)
    n_train, n_val = _count_split(datalist, int(fold))
    cfg = derive_from_data(cfg, stats, n_train, n_val, int(user.get("num_gpus", visible_gpus())))
    from petclick.auto3dseg.analysis import cached_pet_statistics

    cfg["pet_stats"] = cached_pet_statistics(Path(data_stats_filename).with_name("datastats_pet.yaml"), datalist, dataroot)
    if cfg["data"].get("pet_clip") == "auto":
        top = (cfg["pet_stats"].get("lesion_suv") or cfg["pet_stats"].get("body_suv") or [0, 0, 10.0])[-1]
        cfg["data"]["pet_clip"] = [0.0, float(top)]
    cfg.update(algo=algo, fold=int(fold), bundle_root=str(out), ckpt_path=str(out / "model"),
               datalist=str(datalist), dataroot=str(dataroot))
    order = ["algo", "fold", "preset", "num_repeats", "bundle_root", "ckpt_path", "datalist", "dataroot",
             "network", "data", "augment", "clicks", "training", "infer", "plan"]
    cfg = {**{k: cfg[k] for k in order if k in cfg}, **{k: v for k, v in cfg.items() if k not in order}}
    validate_config(cfg, f"{data_src_cfg} (with the {algo} template)")
    write_yaml(out / "configs" / HYPER, cfg, header=(
        f"# Generated by petclick fill_template_config: preset {cfg['preset']}, fold {fold}.\n"
        "# Every value can be edited here, or overridden on the command line:\n"
        "#   python scripts/train.py run --config_file=configs/hyper_parameters.yaml --training#num_epochs=5"))
    inf_path = out / "configs" / INFERENCE
    if inf_path.is_file():  # keep the template's comments: only the bundle_root line changes
        text, n = re.subn(r"(?m)^bundle_root:[^#\n]*", f"bundle_root: {json.dumps(str(out))}  ", inf_path.read_text(), count=1)
        if n != 1:
            raise InputError(inf_path, "the template's inference.yaml needs a top-level 'bundle_root:' line")
        atomic_write_text(inf_path, _inference_header(out) + "\n" + text)
    log.info("%s fold %s: preset %s, roi %s, spacing %s, %s epochs x %s repeats", algo, fold, cfg["preset"],
             cfg["data"]["roi"], cfg["data"]["spacing"], cfg["training"]["num_epochs"], cfg["num_repeats"])
    return {HYPER: {"roi": cfg["data"]["roi"], "spacing": cfg["data"]["spacing"],
                    "num_epochs": cfg["training"]["num_epochs"], "num_repeats": cfg["num_repeats"]}}


def _inference_header(bundle: Path) -> str:
    return ("# Inference with this trained bundle (every model.pt of its repeats, mean of sigmoids):\n"
            f"#   python -m monai.bundle run inference --config_file {bundle}/configs/inference.yaml \\\n"
            "#     --input_ct CT.nii.gz --input_pet PET.nii.gz --input_clicks clicks.json --k 10 --output_dir OUT")


class PetclickBundleAlgo(BundleAlgo):
    """BundleAlgo of every petclick template: fill_template_config delegates to fill_bundle_config
    with the template's algorithm name; training, inference and scoring are MONAI's (train.py,
    infer.py's InferClass and progress.yaml)."""

    def fill_template_config(self, data_stats_filename: str, output_path: str, **kwargs: Any) -> dict:
        if not self.data_list_file:
            raise InputError("AutoRunner", "no input config (data_list_file) was set on the algorithm")
        return fill_bundle_config(self.name or Path(output_path).name.split("_")[0], data_stats_filename,
                                  output_path, self.data_list_file, fold=int(kwargs.get("fold", 0)))
