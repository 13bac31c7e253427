"""`petclick gc`: the grand-challenge container entry point (.mha in, .mha out, PET geometry)."""

from __future__ import annotations

import argparse

from petclick.commands.predict import add_model_args, postprocess_config, resolve_device
from petclick.gc import MODELS_ENV, default_models, run_gc
from petclick.predict import PredictSettings, Runner, load_predictor


def run(args: argparse.Namespace) -> int:
    settings = PredictSettings(steps=None, postprocess=postprocess_config(args), time_budget_s=args.time_budget,
                               tta_axes=tuple(args.tta_axes), progress=False)
    runner = Runner(load_predictor(args.models, device=resolve_device(args.device)), settings)
    written = run_gc(args.input, args.output, runner)
    for path in written:
        print(path)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gc", help="grand-challenge entry point: /input/images/{ct,pet}/*.mha + lesion-clicks.json -> /output",
        description="Reads images/ct/<uuid>.mha, images/pet/<uuid>.mha and lesion-clicks.json (grand-challenge "
                    "points, PET voxel indices) under --input; writes images/tumor-lesion-segmentation/<uuid>.mha "
                    f"with the PET's origin, spacing and direction under --output. Models: --models, else ${MODELS_ENV}, "
                    "else /opt/algorithm/models.")
    p.add_argument("--input", default="/input", help="input folder (default /input)")
    p.add_argument("--output", default="/output", help="output folder (default /output)")
    add_model_args(p, models_default=[default_models()])
    p.set_defaults(func=run)
