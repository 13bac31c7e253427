"""`petclick hpo`: Optuna hyper-parameter search over one bundle (see petclick/workflows/hpo and hpo/README.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from petclick.core.errors import InputError
from petclick.core.yamlio import load_yaml_text

REPO = Path(__file__).resolve().parents[2]


def register(sub: argparse._SubParsersAction) -> None:
    from petclick.workflows.hpo.objectives import OBJECTIVES

    p = sub.add_parser("hpo", help="hyper-parameter search: each trial trains a bundle on a fold (Optuna, resumable)",
                       description="Runs N trials of an Optuna study: each samples hyper-parameters from the search "
                                   "space, generates the algorithm's bundle for the fold from its template (MONAI "
                                   "OptunaGen / fill_template_config), trains it and scores it with the interactive "
                                   "metrics on the fold's validation cases. The study lives in a database (default "
                                   "<work-dir>/hpo.db): re-running resumes it; an SQLAlchemy URL shares it between "
                                   "machines. The best trial is exported as an input.yaml fragment.")
    p.add_argument("--input", type=Path, default=Path("input.yaml"), help="AutoRunner input.yaml (default ./input.yaml)")
    p.add_argument("--algo", default="segresnet", help="template in templates_path_or_url (default segresnet)")
    p.add_argument("--trials", type=int, required=True, help="trials to run in this invocation (0: export only)")
    p.add_argument("--space", type=Path, default=None, help="search-space YAML (default <repo>/hpo/<algo>.yaml)")
    p.add_argument("--storage", default=None, help="SQLAlchemy URL (default sqlite:///<work-dir>/hpo.db)")
    p.add_argument("--study", default=None, help="study name (default <algo>_fold<fold>_<objective>)")
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default=None,
                   help="what trials maximise/minimise (default: the space file's, else dice_auc)")
    p.add_argument("--fold", type=int, default=0, help="fold whose validation cases score the trials (default 0)")
    p.add_argument("--work-dir", type=Path, default=Path("hpo_work"), help="work directory (default ./hpo_work)")
    p.add_argument("--repeats", type=int, default=1, help="repeats (seeds) per trial (default 1; 0: input.yaml's)")
    p.add_argument("--set", dest="fixed", action="append", default=[], metavar="SECTION#KEY=VALUE",
                   help="trial-only override (YAML value), e.g. --set training#num_epochs=5; not exported")
    p.add_argument("--seed", type=int, default=None, help="sampler seed")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--export", type=Path, default=None,
                   help="best trial's input.yaml fragment (default <work-dir>/best_params.yaml)")
    p.set_defaults(func=run)


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`["training#lr=1e-3", ...]` -> {"training#lr": 0.001} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "#" not in key:
            raise InputError("--set", f"{item!r}: write SECTION#KEY=VALUE, e.g. training#num_epochs=5")
        try:
            out[key.strip()] = load_yaml_text(value)
        except yaml.YAMLError as exc:
            raise InputError("--set", f"{item!r}: value is not YAML ({exc})") from exc
    return out


def run(args: argparse.Namespace) -> int:
    from petclick.workflows.hpo.space import load_space
    from petclick.workflows.hpo.study import run_study, summary_lines

    if args.trials < 0:
        raise InputError("--trials", f"must be >= 0, got {args.trials}")
    space = load_space(args.space or REPO / "hpo" / f"{args.algo}.yaml", args.algo)
    res = run_study(args.input, args.algo, space, args.trials, args.work_dir, storage=args.storage,
                    study_name=args.study, objective=args.objective, fold=args.fold, fixed=parse_sets(args.fixed),
                    num_repeats=args.repeats or None, seed=args.seed, export=args.export, timeout_s=args.timeout)
    print(f"== study {res.study.study_name!r} in {res.storage}: {len(res.study.trials)} trial(s)")
    for line in summary_lines(res.study):
        print(line)
    if res.exported:
        best = res.study.best_trial
        print(f"== best trial {best.number}: {best.value:.4f}; fragment {res.exported}")
    else:
        print("== no completed trial yet: nothing exported")
    return 0
