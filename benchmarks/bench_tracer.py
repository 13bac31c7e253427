"""The learned tracer classifier against the MIP rule on held-out phantoms.

    python benchmarks/bench_tracer.py [--train-cases 48] [--train-shape 48 48 64] [--seeds 0]
                                      [--held-out 48x48x64:48:2 96x96x128:8:3 200x200x326:4:4] [--epochs 30]
                                      [--cut-head 0.2] [--train-head-cuts 0.1 0.3]

Generates a training cohort (petclick phantoms, seed --train-seed) and held-out cohorts of other
seeds (SHAPE:CASES:SEED each; the larger ones at whole-body sizes the classifier never saw), plus
the first held-out cohort with its head-most fraction cut off (--cut-head: scans from the neck
down, which removes the brain the rule reads). Trains the classifier (`petclick train-tracer`'s
code, on every case of the training cohort) once per --seeds value, and once more per seed with
copies of each training case cut at --train-head-cuts (other fractions than the held-out cut).
Prints per held-out cohort and method the accuracy overall and per tracer of the rule
(petclick.postprocess.classify_tracer) and of each trained classifier, the seconds per case of
each (MIP + decision, PET already in memory) and the training time. --json writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from petclick.io.images import Volume, load_volume
from petclick.phantoms import generate_cohort
from petclick.postprocess import classify_tracer
from petclick.runtime.tracer_model import TRACERS, TracerClassifier, without_head
from petclick.training.tracer import TracerTraining, train_tracer, tracer_cases

ALL_SPLITS = ("training", "testing")


def held_out_spec(text: str) -> tuple[tuple[int, int, int], int, int]:
    """'96x96x128:8:3' -> ((96, 96, 128), 8 cases, seed 3)."""
    try:
        shape, cases, seed = text.split(":")
        return tuple(int(s) for s in shape.split("x")), int(cases), int(seed)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SHAPE:CASES:SEED like 96x96x128:8:3, got {text!r}") from None


def cut_head(vol: Volume, fraction: float) -> Volume:
    """The volume without its head-most `fraction` (a scan from the neck down: no brain for the rule)."""
    return Volume(*without_head(vol.array, vol.affine, fraction))


def score(guess, cases, pets) -> dict:
    """Accuracy overall and per tracer, and seconds per case, of `guess(pet, affine) -> tracer`."""
    t0 = time.perf_counter()
    answers = [guess(p.array, p.affine) for p in pets]
    seconds = (time.perf_counter() - t0) / len(pets)
    truth = [c.tracer for c in cases]
    row = {"all": float(np.mean([a == t for a, t in zip(answers, truth)])), "s_per_case": seconds}
    for tracer in TRACERS:
        mine = [a == t for a, t in zip(answers, truth) if t == tracer]
        row[tracer] = float(np.mean(mine)) if mine else None
        row[f"n_{tracer}"] = len(mine)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-cases", type=int, default=48)
    p.add_argument("--train-shape", type=int, nargs=3, default=[48, 48, 64])
    p.add_argument("--train-seed", type=int, default=1)
    p.add_argument("--held-out", type=held_out_spec, nargs="+",
                   default=[held_out_spec(s) for s in ("48x48x64:48:2", "96x96x128:8:3", "200x200x326:4:4")])
    p.add_argument("--cut-head", type=float, default=0.2,
                   help="also score the first held-out cohort with this head-most fraction of each scan removed "
                        "(a scan from the neck down; 0: not)")
    p.add_argument("--train-head-cuts", type=float, nargs="*", default=[0.1, 0.3],
                   help="also train classifiers that see every training case without these head-most fractions "
                        "(other than --cut-head's, so the held-out cut is never seen; none: skip that variant)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds of the classifier")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--work", type=Path, default=None, help="folder for the cohorts (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        t0 = time.perf_counter()
        train_dl = generate_cohort(work / "train", args.train_cases, args.train_seed, tuple(args.train_shape))
        held = {}
        for shape, n, seed in args.held_out:
            name = f"{'x'.join(map(str, shape))} seed {seed}"
            dl = generate_cohort(work / f"held_{'x'.join(map(str, shape))}_{seed}", n, seed, shape)
            cases = tracer_cases(dl, ALL_SPLITS)
            held[name] = (cases, [load_volume(c.pet) for c in cases])
        if args.cut_head > 0:
            name, (cases, pets) = next(iter(held.items()))
            held[f"{name}, head-most {100 * args.cut_head:g}% cut"] = (cases, [cut_head(v, args.cut_head) for v in pets])
        print(f"cohorts generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        methods = {"MIP rule": (lambda pet, aff: classify_tracer(pet, aff).tracer, None)}
        variants = {"classifier": ()} | ({"classifier + head cuts": tuple(args.train_head_cuts)}
                                         if args.train_head_cuts else {})
        for variant, cuts in variants.items():
            for seed in args.seeds:
                settings = TracerTraining(epochs=args.epochs, seed=seed, head_cuts=cuts)
                summary = train_tracer(train_dl, work / f"tracer_{len(cuts)}_{seed}.pt", settings, splits=ALL_SPLITS)
                clf = TracerClassifier.load(summary["checkpoint"])
                methods[f"{variant}, seed {seed}"] = (lambda pet, aff, clf=clf: clf.classify(pet, aff).tracer, summary)

    rows = []
    for cohort, (cases, pets) in held.items():
        for method, (guess, summary) in methods.items():
            row = {"cohort": cohort, "method": method, **score(guess, cases, pets)}
            if summary is not None:
                row.update(train_s=summary["seconds_training"], train_accuracy=summary["accuracy"],
                           train_cases=sum(summary["n_cases"].values()), head_cuts=summary["head_cuts"])
            rows.append(row)

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    print(f"training cohort: {args.train_cases} phantoms {'x'.join(map(str, args.train_shape))} seed "
          f"{args.train_seed}; classifier: MONAI ResNet (2D, 2 channels: coronal + sagittal MIP, 64x128), "
          f"{args.epochs} epochs")
    print("| held-out cohort | method | accuracy | FDG | PSMA | cases (FDG/PSMA) | ms per case | train s | train acc |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['cohort']} | {r['method']} | {pct(r['all'])} | {pct(r['fdg'])} | {pct(r['psma'])} | "
              f"{r['n_fdg']}/{r['n_psma']} | {1000 * r['s_per_case']:.0f} | "
              f"{r.get('train_s', '-')} | {pct(r.get('train_accuracy'))} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
