"""`petclick predict`: masks (and probabilities) for one case or a folder, with a time budget and post-processing."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from petclick.core.errors import InputError
from petclick.inference.engine import MODES as INCREMENTAL_MODES
from petclick.inference.predictors import get_predictor
from petclick.inference.routing import parse_step_routes
from petclick.inference.weights import parse_algo_weights
from petclick.io.clickpolicy import ClickPolicy, policy_from_flags
from petclick.postprocess import RULES, make_config
from petclick.workflows.predict import (ALL_STEPS, PredictSettings, Runner, datalist_cases, dicom_cases, folder_cases,
                                        single_case)
from petclick.workflows.shards import Shards

log = logging.getLogger(__name__)
ALGO_WEIGHTS_OPTION = "--algo-weights"
BY_STEP_OPTION = "--predictor-by-step"


def add_algo_weights_arg(p: argparse.ArgumentParser) -> None:
    """--algo-weights ALGO=W ...: per-algorithm ensemble weights (petclick/inference/weights.py)."""
    p.add_argument(ALGO_WEIGHTS_OPTION, nargs="+", default=None, metavar="ALGO=W",
                   help="per-algorithm ensemble weights, e.g. segresnet=2 dints=1: each algorithm's checkpoints "
                        "are averaged, then the algorithms weighted (absent: 1, 0: left out); replaces a "
                        "work_dir's input.yaml ensemble_weights (default: those, else every checkpoint weighs the same)")


def algo_weights(args: argparse.Namespace) -> dict[str, float] | None:
    """The validated --algo-weights of the command line; None when not given."""
    return parse_algo_weights(args.algo_weights, ALGO_WEIGHTS_OPTION)


def add_session_args(p: argparse.ArgumentParser) -> None:
    """Options of every command that runs interactive sessions: click policy and incremental mode."""
    p.add_argument("--drop-outside", action="store_true",
                   help="drop clicks outside the volume with a warning listing each (default: an error naming "
                        "the file and the click)")
    p.add_argument("--click-policy", choices=[c.value for c in ClickPolicy], default=None,
                   help="strict (default): clicks outside the volume or over 10 per kind are errors; "
                        "drop-outside: as --drop-outside; lenient: also keep the first 10 per kind with a warning")
    p.add_argument("--incremental", choices=INCREMENTAL_MODES, default=None,
                   help="re-inference after new clicks: naive (every tile), exact (only tiles whose input "
                        "changed; same result), local (windows around the new clicks; approximate); default: "
                        "the checkpoints' infer.incremental, else exact (naive for a single step)")
    p.add_argument("--tile-cache-mb", type=float, default=None, metavar="MB",
                   help="memory limit of the exact mode's tile cache (default: the checkpoints' "
                        "infer.tile_cache_mb, else $PETCLICK_TILE_CACHE_MB, else 2048); past it tiles are recomputed")


def add_first_args(p: argparse.ArgumentParser, subset_files: bool = False) -> None:
    """Step 0's choice (petclick.inference.session `first`): the full ensemble, or fast then refined.
    `subset_files`: --fast-checkpoints also takes a subset file of `petclick subset` (fast_checkpoints())."""
    from petclick.inference.session import DEFAULT_FAST_CHECKPOINTS, FIRST_CHOICES

    p.add_argument("--first", choices=FIRST_CHOICES, default="ensemble",
                   help="step 0: ensemble (default: the full ensemble answers the first prediction) or fast (the first "
                        "--fast-checkpoints checkpoints answer at once, the full ensemble refines it in the "
                        "background; the first click waits for it)")
    if subset_files:
        p.add_argument("--fast-checkpoints", type=_count_or_file, default=None, metavar="K|SUBSET.json",
                       help=f"checkpoints of the fast step 0 (--first fast): the first K (default "
                            f"{DEFAULT_FAST_CHECKPOINTS}) or those of a `petclick subset` file")
    else:
        p.add_argument("--fast-checkpoints", type=int, default=None, metavar="K",
                       help=f"checkpoints of the fast step 0 (--first fast; default {DEFAULT_FAST_CHECKPOINTS})")


def _count_or_file(text: str) -> int | Path:
    """--fast-checkpoints: a count, or the path of a subset file (read when the command runs)."""
    try:
        return int(text)
    except ValueError:
        return Path(text)


def fast_checkpoints(args: argparse.Namespace) -> int | list[Path] | None:
    """--fast-checkpoints as the session takes it: a count, or a subset file's checkpoints (resolved,
    as the ensemble lists them); a bad file raises InputError naming it."""
    value = getattr(args, "fast_checkpoints", None)
    if not isinstance(value, Path):
        return value
    from petclick.inference.subset import read_subset

    return [c.resolve() for c in read_subset(value)]


def click_policy(args: argparse.Namespace) -> ClickPolicy:
    """The click policy of the command line (--click-policy, --drop-outside)."""
    return policy_from_flags(getattr(args, "drop_outside", False), getattr(args, "click_policy", None))


def add_model_args(p: argparse.ArgumentParser, models_default=None) -> None:
    """Options shared by `predict` and `gc`: models, device, time budget, TTA and post-processing."""
    p.add_argument("--models", nargs="+", default=models_default, metavar="DIR",
                   help="AutoRunner work_dir(s), trained bundle folders or .pt checkpoints (every checkpoint found is "
                        "ensembled), or the built-in baseline 'suv-threshold'"
                        + ("" if models_default is None else f" (default: {' '.join(map(str, models_default))})"))
    p.add_argument(BY_STEP_OPTION, nargs="+", default=None, metavar="RANGE=MODELS|FILE.yaml",
                   help="model choice by click count instead of --models: e.g. 0-5=work_dir_a 6-10=work_dir_b "
                        "(several models of one range: comma-separated), or a YAML file {predictor_by_step: "
                        "{0-5: ..., 6-10: ...}}; the ranges must cover steps 0-10 once (petclick/inference/routing.py)")
    p.set_defaults(models_default=models_default)
    add_algo_weights_arg(p)
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="seconds per case for all its steps: choose how many checkpoints and mirror-TTA axes fit "
                        "(measured on the first checkpoint and case; checkpoints are ordered round-robin over "
                        "algorithms, so a subset mixes them)")
    p.add_argument("--tta-axes", type=int, nargs="*", default=[], metavar="AXIS",
                   help="mirror test-time augmentation over these spatial axes (0 1 2) with every checkpoint "
                        "(ignored with --time-budget, which chooses them)")
    p.add_argument("--postprocess", default="default", metavar="on|off|default|FILE.yaml",
                   help="post-processing: 'default' (click consistency only), 'on' (every rule), 'off' (none: "
                        "plain prob >= 0.5) or a YAML file overriding the defaults")
    p.add_argument("--enable", nargs="+", default=[], choices=RULES, metavar="RULE", help=f"switch rules on: {', '.join(RULES)}")
    p.add_argument("--disable", nargs="+", default=[], choices=RULES, metavar="RULE", help="switch rules off")
    p.add_argument("--tracer-model", default=None, metavar="FILE.pt",
                   help="learned tracer classifier (`petclick train-tracer`) deciding the tracer of cases whose tracer "
                        "is unknown, for the tracer-specific post-processing (default: the MIP rule)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_session_args(p)


def refuse_routes_for_scribbles(args: argparse.Namespace) -> None:
    """--predictor-by-step routes by click count (autoPET IV steps 0-10); an autoPET V scribble state
    (hundreds of stroke voxels) has no such count, so the pair is refused rather than silently sent
    to the 6-10 models."""
    if getattr(args, "predictor_by_step", None) and getattr(args, "protocol", None) == "autopet-v":
        raise InputError(BY_STEP_OPTION, "routes models by click count (autopet-iv steps 0-10); autopet-v "
                                         "scribble steps have no click count: give one model set")


def model_spec(args: argparse.Namespace):
    """What get_predictor loads: --models, or the validated --predictor-by-step routes (not both),
    else the command's default models; neither and no default is an InputError."""
    by_step = getattr(args, "predictor_by_step", None)
    if by_step and args.models and args.models != getattr(args, "models_default", None):
        raise InputError(BY_STEP_OPTION, "give --models or --predictor-by-step, not both")
    if by_step:
        return parse_step_routes(by_step, BY_STEP_OPTION)
    models = args.models
    if not models:
        raise InputError("--models", "no model given: use --models or --predictor-by-step")
    return models


def load_predictor(args: argparse.Namespace, device: str, weights: dict[str, float] | None):
    """The command line's predictor (the one loader); with --predictor-by-step the --tta-axes go to
    every model set (mirroring built into each ensemble), since the run cannot choose subsets of them."""
    spec = model_spec(args)
    if isinstance(spec, dict) and args.tta_axes:
        return get_predictor(spec, device=device, algo_weights=weights, tta_flip_axes=tuple(args.tta_axes)), ()
    return get_predictor(spec, device=device, algo_weights=weights), tuple(args.tta_axes)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; under torchrun 'cuda' is this rank's GPU
    (cuda:$LOCAL_RANK); anything else unchanged."""
    import torch
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def postprocess_config(args: argparse.Namespace) -> dict:
    """The post-processing configuration of the command line (--postprocess, then --enable/--disable)."""
    value = args.postprocess
    if value == "default":
        cfg = make_config()
    elif value in ("on", "off"):
        cfg = make_config(None, **{rule: value == "on" for rule in RULES})
    else:
        cfg = make_config(value)
    return make_config(cfg, **{r: True for r in args.enable}, **{r: False for r in args.disable})


def _steps(args: argparse.Namespace) -> tuple[int, ...] | None:
    if args.all_steps:
        return ALL_STEPS
    if args.k is not None:
        if not 0 <= args.k <= 10:
            raise InputError(None, f"--k must be in 0..10, got {args.k}")
        return (args.k,)
    return None


def _cases(args: argparse.Namespace):
    given = [bool(args.ct or args.pet), bool(args.input), bool(args.datalist), bool(args.dicom)]
    if sum(given) != 1:
        raise InputError(None, "give exactly one of: --ct and --pet (one case), --input DIR (autoPET layout), "
                               "--datalist FILE or --dicom DIR|URL")
    if args.dicom_seg and not args.dicom:
        raise InputError("--dicom-seg", "a DICOM SEG references the PET's DICOM instances: read the case with --dicom")
    if args.study and not args.dicom:
        raise InputError("--study", "goes with --dicom")
    if args.dicom:
        return dicom_cases(args.dicom, args.study, args.clicks, args.tracer)
    if args.ct or args.pet:
        if not (args.ct and args.pet):
            raise InputError(args.ct or args.pet, "both --ct and --pet are needed for one case")
        return [single_case(args.ct, args.pet, args.clicks, args.case_id, args.tracer)]
    if args.clicks:
        raise InputError(args.clicks, "--clicks goes with --ct/--pet; folders read clicks/<case>_clicks.json")
    cases = folder_cases(args.input) if args.input else datalist_cases(args.datalist, args.split, args.dataroot, args.fold)
    if args.tracer:
        for c in cases:
            c.tracer = args.tracer
    return cases


def run(args: argparse.Namespace) -> int:
    weights = algo_weights(args)
    cases = _cases(args)
    device = resolve_device(args.device)
    shards = Shards.from_env(device)
    try:
        predictor, tta_axes = load_predictor(args, device, weights)
        settings = PredictSettings(steps=_steps(args), postprocess=postprocess_config(args), save_prob=args.save_prob,
                                   time_budget_s=args.time_budget, tta_axes=tta_axes,
                                   progress=not args.no_progress, click_policy=click_policy(args),
                                   incremental=args.incremental, tile_cache_mb=args.tile_cache_mb,
                                   tracer_model=args.tracer_model, dicom_seg=args.dicom_seg)
        summary = Runner(predictor, settings).run(cases, args.out, shards)
    finally:
        shards.close()
    if shards.is_main:
        n_files = sum(len(r["files"]) for r in summary["cases"])
        print(f"{len(summary['cases'])} case(s), {n_files} mask(s) written to {args.out}"
              + (f" by {shards.world_size} ranks" if shards.world_size > 1 else ""))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="predict lesion masks for one case or a folder",
        description="Ensemble every checkpoint found, post-process and write masks on the PET grid. Output: "
                    "<case>.nii.gz (all clicks), or <case>_pred<k>.nii.gz per step with --k/--all-steps; "
                    "<case>_prob*.nii.gz with --save-prob; predict.json (plan, ensemble weights, tracer, timings).")
    add_model_args(p)
    src = p.add_argument_group("input (one of)")
    src.add_argument("--ct", help="CT image (.nii.gz or .mha)")
    src.add_argument("--pet", help="PET image in SUV (.nii.gz or .mha); output lies on its grid")
    src.add_argument("--clicks", help="click file (plain or grand-challenge JSON) for --ct/--pet")
    src.add_argument("--case-id", help="output name for --ct/--pet (default: the PET file name)")
    src.add_argument("--input", help="autoPET-layout folder (imagesTs/ or imagesTr/, clicks/)")
    src.add_argument("--datalist", help="datalist JSON; cases of --split (and --fold)")
    src.add_argument("--dicom", metavar="DIR|URL",
                     help="DICOM PET/CT studies: a folder of files or a DICOMweb root (http://.../dicom-web); each "
                          "study is a case (CT resampled onto the PET grid, PET converted to SUV from its tags)")
    src.add_argument("--study", metavar="UID", help="only this StudyInstanceUID of --dicom")
    src.add_argument("--split", default="testing", help="datalist split (default: testing)")
    src.add_argument("--fold", type=int, default=None, help="only this fold of the split")
    src.add_argument("--dataroot", default=None, help="root of the datalist's relative paths (default: its folder)")
    p.add_argument("--tracer", choices=("fdg", "psma"), default=None,
                   help="tracer of every case (default: from the case id or datalist, else classified from the PET MIP)")
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--k", type=int, default=None, help="protocol step: use the first k clicks of each kind")
    steps.add_argument("--all-steps", action="store_true", help="predict steps 0..10")
    p.add_argument("--save-prob", action="store_true", help="also write the ensemble's probabilities")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write each mask as a DICOM SEG <case>.seg.dcm on the PET series (with --dicom)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)
