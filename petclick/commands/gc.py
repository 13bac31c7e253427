"""`petclick gc`: the grand-challenge container entry point (.mha in, .mha out, PET geometry)."""

from __future__ import annotations

import argparse
import os

from petclick.commands.predict import (add_model_args, algo_weights, click_policy, load_predictor, postprocess_config,
                                       refuse_routes_for_scribbles, resolve_device)
from petclick.core.errors import InputError
from petclick.io.clickpolicy import ClickPolicy
from petclick.metrics.editions import EDITIONS, edition
from petclick.workflows.gc import MODELS_ENV, STATE_ENV, TRACER_MODEL_ENV, default_models, default_state_dir, run_gc
from petclick.workflows.predict import PredictSettings, Runner

BUDGET_ENV = "PETCLICK_TIME_BUDGET"


def gc_click_policy(args: argparse.Namespace) -> ClickPolicy:
    """The container's click policy: lenient (a job never fails over its clicks) unless
    --click-policy or --drop-outside asks for another."""
    if args.click_policy is None and not args.drop_outside:
        return ClickPolicy.LENIENT
    return click_policy(args)


def run(args: argparse.Namespace) -> int:
    weights = algo_weights(args)
    budget = args.time_budget
    if budget is None and os.environ.get(BUDGET_ENV):
        try:
            budget = float(os.environ[BUDGET_ENV])
        except ValueError as exc:
            raise InputError(BUDGET_ENV, f"must be a number of seconds, got {os.environ[BUDGET_ENV]!r}") from exc
    refuse_routes_for_scribbles(args)
    state = args.state if args.state is not None else default_state_dir()
    predictor, tta_axes = load_predictor(args, resolve_device(args.device), weights)
    settings = PredictSettings(steps=None, postprocess=postprocess_config(args), time_budget_s=budget,
                               tta_axes=tta_axes, progress=False, click_policy=gc_click_policy(args),
                               incremental=args.incremental, tile_cache_mb=args.tile_cache_mb,
                               tracer_model=args.tracer_model or os.environ.get(TRACER_MODEL_ENV) or None,
                               budget=edition(args.protocol).budget, stateful=state is not None)
    runner = Runner(predictor, settings)
    written = run_gc(args.input, args.output, runner, settings.click_policy, args.protocol, state)
    for path in written:
        print(path)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gc", help="grand-challenge entry point: /input/images/{ct,pet}/*.mha + lesion-clicks.json -> /output",
        description="Reads images/ct/<uuid>.mha, images/pet/<uuid>.mha and lesion-clicks.json (grand-challenge "
                    "points, PET voxel indices) under --input; writes images/tumor-lesion-segmentation/<uuid>.mha "
                    f"with the PET's origin, spacing and direction under --output (uuid = the CT file's name). Models: "
                    f"--models, else ${MODELS_ENV}, else /opt/algorithm/models. Time budget: --time-budget, else "
                    f"${BUDGET_ENV} (seconds per job). Tracer classifier: --tracer-model, else ${TRACER_MODEL_ENV}, "
                    f"else the MIP rule. autoPET V: --protocol autopet-v, state folder --state or ${STATE_ENV}.")
    p.add_argument("--input", default="/input", help="input folder (default /input)")
    p.add_argument("--output", default="/output", help="output folder (default /output)")
    p.add_argument("--protocol", choices=sorted(EDITIONS), default="autopet-iv",
                   help="autopet-iv: up to 10 clicks of each kind (default); autopet-v: lesion-clicks.json holds "
                        "every scribble voxel so far, one run per corrective step")
    p.add_argument("--state", default=None, metavar="DIR",
                   help=f"keep each case's session here between runs (else ${STATE_ENV}; neither: every run starts "
                        "afresh): the next step re-runs only what its scribbles change, a rerun of a step returns "
                        "the same mask without computing")
    add_model_args(p, models_default=[default_models()])
    p.set_defaults(func=run)
