"""`petclick plan`: the run plan of a datalist before anything runs (RAM, disk, iterations,
validations, hours; petclick.training.plan)."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from petclick.commands.argtypes import bounded
from petclick.core.errors import InputError

log = logging.getLogger("petclick.plan")
_positive_int = bounded(int, 1)
_positive = bounded(float, 0.0, lo_open=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="print the training plan of a datalist: RAM, disk, iterations, validations, hours",
                       description="Reads the PET headers of every training case (no voxel) and prints what one fold "
                                   "of the preset will cache in RAM and on disk, how many iterations and validations "
                                   "it runs, and the expected hours, from step times recorded in the docs (their "
                                   "source named) or given with --step-s / --pass-s.")
    p.add_argument("--datalist", required=True, type=Path, help="datalist.json (petclick datalist)")
    p.add_argument("--dataroot", type=Path, default=None, help="root of the datalist's relative paths (default: its folder)")
    p.add_argument("--input", type=Path, default=None,
                   help="an AutoRunner input.yaml (preset, overrides) to plan instead of --preset")
    p.add_argument("--preset", default="autopet", help="autopet (default) or demo")
    p.add_argument("--algo", default="segresnet", help="bundle template whose per-preset values apply (default segresnet)")
    p.add_argument("--gpus", type=_positive_int, default=1, help="GPUs (torchrun ranks) on the node (default 1)")
    p.add_argument("--fold", type=int, default=0, help="the fold planned (default 0)")
    p.add_argument("--ram-gb", type=_positive, default=None, help="available RAM to plan for (default: this machine's)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="the disk cache folder (default: data.cache_dir, auto = WORK_DIR/cache; here ./work_dir/cache)")
    p.add_argument("--step-s", type=_positive, default=None, help="measured seconds per training step")
    p.add_argument("--pass-s", type=_positive, default=None,
                   help="measured seconds per whole-body 400x400x326 pass (validation cost)")
    p.add_argument("--gpu-gb", type=_positive, default=None,
                   help="plan the ROI and batch for a GPU with this many GB free (default: probe this machine's GPUs)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> dict:
    from petclick.auto3dseg.algo import merged_config
    from petclick.config.packaged import BUNDLES
    from petclick.core.yamlio import read_yaml

    template_file = BUNDLES / args.algo / "configs" / "hyper_parameters.yaml"
    if not template_file.is_file():
        raise InputError(template_file, f"no bundle template named {args.algo!r}")
    user = read_yaml(args.input) if args.input else {"preset": args.preset}
    return merged_config(read_yaml(template_file), user, args.algo)


def run(args: argparse.Namespace) -> int:
    import nibabel as nib

    from petclick.io.datalist import load_datalist, resolve_entry, split_fold
    from petclick.training.gpuplan import GpuInfo, apply_gpu_plan
    from petclick.training.plan import GB, STEP_TIMES, StepTimes, make_plan

    cfg = _config(args)
    given = None if args.gpu_gb is None else [GpuInfo(0, "given with --gpu-gb", int(args.gpu_gb * GB),
                                                       int(args.gpu_gb * GB))]
    gpu = apply_gpu_plan(cfg, args.gpus, given)  # data.roi / batch_size from the GPU's free memory
    data = load_datalist(args.datalist)
    root = args.dataroot or args.datalist.parent
    entries = data.get("training", [])
    if not entries:
        raise InputError(args.datalist, "has no training cases to plan")
    train, val = split_fold(entries, args.fold, args.datalist)
    shapes = []
    for e in entries:
        pet = resolve_entry(e, root)["pet"]
        try:
            img = nib.load(pet)
        except Exception as exc:  # noqa: BLE001 - any unreadable header is the user's file
            raise InputError(pet, f"cannot read the NIfTI header ({exc})") from exc
        shapes.append((tuple(int(x) for x in img.shape[:3]), tuple(float(x) for x in img.header.get_zooms()[:3])))
    times = STEP_TIMES.get(str(cfg.get("preset")), STEP_TIMES["autopet"])
    if args.step_s or args.pass_s:
        times = StepTimes(args.step_s or times.step_s, args.pass_s or times.pass_s,
                          "given on the command line" + ("" if args.step_s and args.pass_s else f"; the rest {times.source}"))
    cache_dir = args.cache_dir
    if cache_dir is None and cfg["data"].get("cache_dir", "auto") is not None:
        cache_dir = Path(cfg["data"]["cache_dir"]) if cfg["data"]["cache_dir"] != "auto" else Path("work_dir") / "cache"
    folds = int(data.get("num_folds") or (max(int(e.get("fold", 0)) for e in entries) + 1))
    plan = make_plan(cfg, shapes, len(train), len(val), gpus=args.gpus, folds=folds, times=times,
                     available=None if args.ram_gb is None else int(args.ram_gb * GB), cache_dir=cache_dir, gpu=gpu)
    missing = [e for e in entries if not e.get("clicks")]
    if missing and max(int(s) for s in cfg["clicks"]["val_steps"]) > 0:
        plan.notes.append(f"{len(missing)} of {len(entries)} training cases have no click file: training refuses to "
                          "validate click steps without them (petclick simulate-clicks --dataroot DIR, then petclick "
                          "datalist)")
    largest = max(shapes, key=lambda s: math.prod(s[0]))
    plan.notes.append(f"largest case {'x'.join(map(str, largest[0]))} at {', '.join(f'{v:.2f}' for v in largest[1])} mm")
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1))
    else:
        print("\n".join(plan.lines()))
    return 0
