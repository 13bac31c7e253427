"""What a model set does before the first click: its step-0 probability on a cohort.

Issue 26's step 0 is the automatic segmentation a reader starts from, the one step the click rule
cannot do. This prints, for the ensemble's mean probability with no click, the mean Dice over the
cases with lesions at several thresholds, and how the most probable lesion voxel compares with the
most probable voxel outside the lesions (per case; median and 90th percentile). A model that has
learnt "a lesion is where a click is" has lesion maxima far below the background's, and no
threshold detects.

    python benchmarks/bench_step0.py --models W/seed0 --cohort DATA/petclick_quality_1234_24_48x48x64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

THRESHOLDS = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02)


def step0_table(models: Path, cohort: Path) -> dict:
    """Mean Dice@0 per threshold and the lesion/background probability maxima over the cohort's cases."""
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.io.clickfile import Clicks
    from petclick.io.datalist import load_datalist, resolve_entry
    from petclick.io.images import load_case

    checkpoints = sorted(models.rglob("model.pt"))
    if not checkpoints:
        raise SystemExit(f"bench_step0: no model.pt under {models}")
    predictor = EnsemblePredictor(checkpoints)
    datalist = load_datalist(cohort / "datalist.json")
    entries = list(datalist.get("training", [])) + list(datalist.get("testing", []))
    dice: dict[float, list[float]] = {t: [] for t in THRESHOLDS}
    lesion_max, outside_max = [], []
    for e in entries:
        r = resolve_entry(e, cohort)
        case = load_case(r["image"], r["pet"], r["label"])
        prob = predictor.predict(case, Clicks([], []))
        lesion = case.label.array != 0
        outside_max.append(float(prob[~lesion].max()))
        if not lesion.any():
            continue
        lesion_max.append(float(prob[lesion].max()))
        for t in THRESHOLDS:
            m = prob >= t
            dice[t].append(float(2 * np.count_nonzero(m & lesion) / (np.count_nonzero(m) + np.count_nonzero(lesion))))
    return {"checkpoints": len(checkpoints), "cases": len(entries), "lesion_cases": len(lesion_max),
            "dice_at_0": {str(t): float(np.mean(v)) for t, v in dice.items()},
            "lesion_max_prob": {"median": float(np.median(lesion_max)), "p90": float(np.percentile(lesion_max, 90))},
            "outside_max_prob": {"median": float(np.median(outside_max)), "p90": float(np.percentile(outside_max, 90))}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, required=True, help="a folder holding the checkpoints (model.pt, searched recursively)")
    ap.add_argument("--cohort", type=Path, required=True, help="a phantom cohort folder (datalist.json, images, labels)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    out = step0_table(args.models, args.cohort)
    print(f"{out['checkpoints']} checkpoints, {out['cases']} cases ({out['lesion_cases']} with lesions), step 0 (no click)")
    print("| threshold | " + " | ".join(out["dice_at_0"]) + " |")
    print("| --- |" + " --- |" * len(out["dice_at_0"]))
    print("| mean Dice@0 | " + " | ".join(f"{v:.3f}" for v in out["dice_at_0"].values()) + " |")
    print(f"max probability in a case's lesions: median {out['lesion_max_prob']['median']:.2g}, "
          f"p90 {out['lesion_max_prob']['p90']:.2g}; outside them: median {out['outside_max_prob']['median']:.2g}, "
          f"p90 {out['outside_max_prob']['p90']:.2g}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
