"""`petclick ensemble`: AutoRunner's ensemble step over every trained bundle of a work_dir, with
per-algorithm weights (input.yaml `ensemble_weights`, or --weights)."""

from __future__ import annotations

import argparse
from pathlib import Path

from petclick.inference.weights import parse_algo_weights
from petclick.core.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ensemble", help="weighted AutoRunner ensemble of every trained bundle in a work_dir")
    p.add_argument("--work-dir", required=True, type=Path, help="AutoRunner work_dir (holds input.yaml and the bundles)")
    p.add_argument("--weights", nargs="+", default=None, metavar="ALGO=WEIGHT",
                   help="per-algorithm weights, e.g. segresnet=2 dints=1 (default: input.yaml ensemble_weights; "
                        "absent algorithms weigh 1, 0 leaves one out)")
    p.add_argument("--output-dir", type=Path, default=None, help="default: WORK_DIR/ensemble_output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petclick.auto3dseg.ensemble import run_weighted_ensemble

    if not (args.work_dir / "input.yaml").is_file():
        raise InputError(args.work_dir, "no input.yaml: not an AutoRunner work_dir")
    kwargs = {"output_dir": str(args.output_dir)} if args.output_dir else {}
    out = run_weighted_ensemble(args.work_dir, parse_algo_weights(args.weights, "--weights"), **kwargs)
    print(f"ensemble predictions: {out}")
    return 0
