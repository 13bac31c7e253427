"""`petclick interactive`: run predictors through a challenge protocol (autopet-iv clicks, autopet-v
scribbles) on a datalist split and report."""

from __future__ import annotations

import argparse
from pathlib import Path

from petclick.commands.argtypes import steps_count
from petclick.commands.predict import (BY_STEP_OPTION, add_algo_weights_arg, add_first_args, add_session_args,
                                       algo_weights, click_policy, fast_checkpoints, postprocess_config,
                                       refuse_routes_for_scribbles)
from petclick.core.errors import InputError
from petclick.inference.predictors import BUILTIN
from petclick.inference.routing import parse_step_routes
from petclick.postprocess import RULES
from petclick.clicks.strokes import STRATEGIES
from petclick.metrics.editions import EDITIONS
from petclick.metrics.protocol import MODES
from petclick.workflows.interactive import InteractiveJob, run_interactive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interactive", help="run a predictor through the interactive protocol (clicks or scribbles) "
                                           "and evaluate it",
                       description="For each case of a datalist split: load CT/PET/label (and clicks), run the "
                                   "predictor through the protocol's steps and score every step; writes the report "
                                   "of `petclick evaluate` into --out. autopet-iv: 0..10 clicks of each kind. "
                                   "autopet-v: an initial prediction, then one corrective scribble per step drawn "
                                   "on the previous prediction's largest error (the official rule); Dice, DMM, FPV, "
                                   "FNV and both AUC-DMM aggregations.")
    p.add_argument("--predictor", default=None, help=f"built-in name ({', '.join(BUILTIN)}) or a trained model "
                                                     "(AutoRunner work_dir, bundle folder, checkpoint or a "
                                                     "`petclick subset` file)")
    p.add_argument(BY_STEP_OPTION, nargs="+", default=None, metavar="RANGE=MODELS|FILE.yaml",
                   help="instead of --predictor: model choice by click count, e.g. 0-5=work_dir_a 6-10=work_dir_b, "
                        "or a YAML file (as `petclick predict`)")
    p.add_argument("--datalist", required=True, type=Path)
    p.add_argument("--split", default="testing", help="datalist split to run (default: testing)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--protocol", choices=sorted(EDITIONS), default="autopet-iv",
                   help="autopet-iv: 11 click steps (default); autopet-v: corrective scribbles, 6 steps by default")
    p.add_argument("--steps", type=steps_count, default=None,
                   help="number of steps N, 0..N-1 (default 11 for autopet-iv, 6 for autopet-v: initial + 5 corrections)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="official (autopet-iv default): the click file's first k clicks; error-driven: clicks placed "
                        "on each step's errors; scribbles (autopet-v, its only mode)")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default=None,
                   help="autopet-v stroke strategy for every case (default: centerline, random, boundary dealt "
                        "round-robin over the sorted case ids, a third each)")
    p.add_argument("--dataroot", type=Path, default=None, help="root of the datalist's relative paths (default: its folder)")
    p.add_argument("--save-predictions", action="store_true", help="write <case>_pred<k>.nii.gz into OUT/predictions/")
    p.add_argument("--compare", nargs="+", default=[], metavar="NAME_OR_MODEL",
                   help="more predictors to run on the same cases; each gets OUT/<name>/ and OUT/compare.json")
    p.add_argument("--device", default="auto", help="device for model predictors: auto (cuda when available, else "
                                                    "cpu), cpu, cuda or cuda:N")
    add_algo_weights_arg(p)
    p.add_argument("--suv-threshold", type=float, default=2.5, help="SUV threshold of the suv-threshold baseline")
    p.add_argument("--cases", nargs="+", default=None, help="only these case ids")
    p.add_argument("--no-mip", action="store_true", help="skip the per-case MIP pictures")
    p.add_argument("--postprocess", default="default", metavar="default|off|on|FILE.yaml",
                   help="post-processing of each step's mask before it is scored, as `petclick predict`, `gc` and "
                        "`demo` apply it (default: the shipped rules, click consistency); off scores the "
                        "network's prob >= 0.5. The report header and summary.json name what was used")
    p.add_argument("--enable", nargs="+", default=[], choices=RULES, metavar="RULE", help="switch rules on")
    p.add_argument("--disable", nargs="+", default=[], choices=RULES, metavar="RULE", help="switch rules off")
    add_session_args(p)
    add_first_args(p, subset_files=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petclick.commands.predict import resolve_device
    from petclick.workflows.shards import Shards

    args.device = resolve_device(args.device)
    shards = Shards.from_env(args.device)
    try:
        return _run(args, shards)
    finally:
        shards.close()


def _predictor(args: argparse.Namespace) -> str | dict:
    """--predictor, or the validated --predictor-by-step routes (exactly one of them)."""
    if (args.predictor is None) == (args.predictor_by_step is None):
        raise InputError("--predictor", "give exactly one of --predictor and --predictor-by-step")
    refuse_routes_for_scribbles(args)
    return args.predictor if args.predictor is not None else parse_step_routes(args.predictor_by_step, BY_STEP_OPTION)


def _run(args: argparse.Namespace, shards) -> int:
    return run_interactive(InteractiveJob(
        predictor=_predictor(args), datalist=args.datalist, out=args.out, split=args.split, mode=args.mode,
        dataroot=args.dataroot, save_predictions=args.save_predictions, compare=list(args.compare),
        device=args.device, algo_weights=algo_weights(args), suv_threshold=args.suv_threshold, cases=args.cases,
        no_mip=args.no_mip, click_policy=click_policy(args), incremental=args.incremental,
        tile_cache_mb=args.tile_cache_mb, first=args.first, fast_checkpoints=fast_checkpoints(args),
        protocol=args.protocol, steps=args.steps, strategy=args.strategy,
        postprocess=None if args.postprocess == "off" and not args.enable else postprocess_config(args)), shards)
