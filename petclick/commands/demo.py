"""`petclick demo`: phantoms -> AutoRunner (demo preset) -> interactive evaluation vs suv-threshold."""

from __future__ import annotations

import argparse
from pathlib import Path

from petclick.config.packaged import INPUT_TEMPLATE
from petclick.workflows.demo import DEFAULT_TIME_BUDGET_S, DEMO_COHORT, run_demo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train and evaluate the click-guided ensemble on the embedded phantoms",
                       description="Generates the phantom cohort if missing, runs MONAI AutoRunner with input.yaml "
                                   "(preset demo: 5 folds x 4 repeats = 20 checkpoints), then the 11-step interactive "
                                   "protocol on the testing split against the suv-threshold baseline.")
    p.add_argument("--out", type=Path, default=Path("demo"),
                   help="output folder: phantoms/, work_dir/, report/, input.yaml (default ./demo)")
    p.add_argument("--data", type=Path, default=None,
                   help="phantom cohort folder (default: <out>/phantoms; generated when missing)")
    p.add_argument("--input", type=Path, default=INPUT_TEMPLATE,
                   help="AutoRunner input template (default: petclick's, petclick/bundles/input.yaml)")
    p.add_argument("--cases", type=int, default=DEMO_COHORT["cases"], help=f"phantom cases (default {DEMO_COHORT['cases']})")
    p.add_argument("--seed", type=int, default=DEMO_COHORT["seed"], help=f"cohort seed (default {DEMO_COHORT['seed']})")
    p.add_argument("--shape", type=int, nargs=3, default=DEMO_COHORT["shape"], metavar=("X", "Y", "Z"),
                   help="phantom grid (default %(default)s)")
    p.add_argument("--min-test-cases", type=int, default=None,
                   help=f"testing split: whole patients holding at least this many cases (default: "
                        f"{DEMO_COHORT['min_test_cases']} for the embedded {DEMO_COHORT['cases']}-case cohort, "
                        f"else about 20%% of the patients)")
    p.add_argument("--folds", type=int, default=None, help="num_fold override (default: input.yaml's, 5)")
    p.add_argument("--repeats", type=int, default=None, help="num_repeats override (default: input.yaml's, 4)")
    p.add_argument("--preset", choices=["demo", "autopet"], default=None, help="preset override (default: input.yaml's, demo)")
    p.add_argument("--device", default="auto", help="device of the interactive evaluation: auto (cuda when available, "
                                                    "else cpu), cpu, cuda or cuda:N")
    p.add_argument("--time-budget", type=float, default=DEFAULT_TIME_BUDGET_S, metavar="SECONDS",
                   help="wall-clock target of the whole demo: each fold's training is sized to this machine's speed "
                        "(default %(default)s; 0: the recipe's iterations, however long they take)")
    p.add_argument("--skip-train", action="store_true", help="reuse <out>/work_dir and only evaluate")
    p.add_argument("--prepare-only", action="store_true",
                   help="stop after generating the cohort and writing <out>/input.yaml (what AutoRunner would run)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from petclick.commands.predict import resolve_device

    min_test = args.min_test_cases
    if min_test is None and args.cases == DEMO_COHORT["cases"]:
        min_test = DEMO_COHORT["min_test_cases"]
    run_demo(args.out, args.data, args.input, args.cases, args.seed, args.shape, min_test,
             folds=args.folds, repeats=args.repeats, preset=args.preset, device=resolve_device(args.device),
             skip_train=args.skip_train, prepare_only=args.prepare_only, time_budget=args.time_budget or None)
    return 0
