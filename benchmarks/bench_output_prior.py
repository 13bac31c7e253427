"""Does the output-bias prior (`network.output_prior`) make short trainings learn? One checkpoint per
(prior, seed/fold), trained by petclick's loop from a generated bundle's config, then scored with
the official metrics at steps 0, 5 and 10 on its fold's validation cases and on the testing split.

Prints one row per run and a mean row per prior. Needs a generated bundle (run `petclick demo`
first, or any AutoRunner work_dir): its config gives the network, data and click settings.

    python benchmarks/bench_output_prior.py --bundle demo/work_dir/segresnet_0 --priors none 0.05 0.007 \
        --runs 3 --epochs 10 --iterations 8 --lr 5e-3

Run r trains fold r (mod the folds of the datalist) with repeat seed r, so runs differ in both.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from petclick.io.datalist import entry_case_id, load_datalist, resolve_entry
from petclick.config.bundle import load_bundle_config
from petclick.core.yamlio import apply_overrides
from petclick.training.data import fold_files, train_dataset, val_dataset
from petclick.training.distributed import init_distributed
from petclick.training.loop import RepeatTrainer
from petclick.training.validation import validate

STEPS = (0, 5, 10)


def _prior(text: str) -> float | None:
    return None if text.lower() in ("none", "null") else float(text)


def _scores(model, dataset, cfg, trainer) -> dict:
    m = validate(model, dataset, trainer.desc["infer"], cfg["clicks"].get("encoding"), STEPS, "cpu")
    return {**{f"dice{s}": m["per_step"][s]["dice"] for s in STEPS}, "fpv_ml": m["fpv_ml"]}


def run_one(base: dict, prior: float | None, run: int, args, workdir: Path) -> dict:
    cfg = apply_overrides(base, {"network#output_prior": prior, "training#num_epochs": args.epochs,
                                 "training#num_iterations_per_epoch": args.iterations, "training#lr": args.lr,
                                 "training#val_every": args.epochs, "training#warmup_epochs": 0})
    n_folds = len({int(e["fold"]) for e in load_datalist(cfg["datalist"])["training"]})
    cfg["fold"] = run % n_folds
    files = fold_files(cfg["datalist"], cfg["dataroot"], cfg["fold"])
    testing = [dict(resolve_entry(e, cfg["dataroot"]), case=entry_case_id(e))
               for e in load_datalist(cfg["datalist"]).get("testing", [])]
    train_ds, val_ds = train_dataset(cfg, files.train, cfg["data"]["roi"]), val_dataset(cfg, files.val)
    out = workdir / f"prior{prior}_run{run}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    trainer = RepeatTrainer(cfg, run, out, init_distributed("cpu"), train_ds, val_ds)
    trainer.run()
    seconds = time.time() - t0
    row = {"prior": prior, "run": run, "fold": cfg["fold"], "train_s": seconds,
           "final_loss": trainer.losses[-1], "val": _scores(trainer.model, val_ds, cfg, trainer)}
    if testing:
        row["test"] = _scores(trainer.model, val_dataset(cfg, testing), cfg, trainer)
    return row


def _fmt(v: float) -> str:
    return "nan" if v is None or np.isnan(v) else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, type=Path, help="a generated bundle folder (configs/hyper_parameters.yaml)")
    ap.add_argument("--priors", nargs="+", default=["none", "0.05", "0.007"], help="priors to compare; none: stock init")
    ap.add_argument("--runs", type=int, default=3, help="runs per prior (run r: fold r, repeat seed r)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=8, help="iterations per epoch")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = load_bundle_config(str(args.bundle / "configs" / "hyper_parameters.yaml"), {})
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_prior_") as tmp:
        for text in args.priors:
            for run in range(args.runs):
                rows.append(run_one(base, _prior(text), run, args, Path(tmp)))
                print(json.dumps(rows[-1], default=float), flush=True)
    splits = [s for s in ("val", "test") if s in rows[0]]
    head = ["prior", "run", "fold", "train_s"] + [f"{s}_{k}" for s in splits for k in ("dice0", "dice5", "dice10", "fpv_ml")]
    print("\n" + " ".join(f"{h:>12}" for h in head))
    for text in args.priors:
        mine = [r for r in rows if r["prior"] == _prior(text)]
        for r in mine + [None]:
            src = r if r is not None else {
                "run": "mean", "fold": "", "train_s": float(np.mean([x["train_s"] for x in mine])),
                **{s: {k: float(np.nanmean([x[s][k] for x in mine])) for k in mine[0][s]} for s in splits}}
            cells = [text, str(src["run"]), str(src["fold"]), f"{src['train_s']:.1f}"]
            cells += [_fmt(src[s][k]) for s in splits for k in ("dice0", "dice5", "dice10", "fpv_ml")]
            print(" ".join(f"{c:>12}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
