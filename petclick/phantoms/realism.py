"""How close a phantom cohort's lesions are to real autoPET lesions, measured as nnU-Net measures.

The reference is the public nnU-Net dataset fingerprint of the autoPET V training set (1,611
studies): the intensity distribution inside the lesion labels, per channel. nnU-Net draws 10,000
lesion voxels per case, with replacement and seed 1234, pools them over the cases and reports
percentiles, so every case with lesions weighs the same whatever its tumour volume;
`lesion_voxel_sample` and `cohort_realism` do the same for a phantom cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

#: Lesion-voxel statistics of the real training set (nnU-Net fingerprint, autoPET V, 1,611 studies).
REAL_AUTOPET: dict[str, dict[str, float]] = {
    "suv": {"p0.5": 1.04, "median": 4.68, "mean": 7.06, "p99.5": 51.2, "max": 393.0},
    "hu": {"p0.5": -832.0, "median": 71.0, "mean": 108.0, "p99.5": 1128.0},
}
#: The calibration targets: SUV median and p99.5 within 20% of the real value, SUV p0.5 within
#: 0.3 SUV, and HU tails that reach lung (p0.5 below -600) and dense bone (p99.5 above 800).
SUV_RELATIVE_TOLERANCE = 0.2
SUV_P05_TOLERANCE = 0.3
HU_LUNG_TAIL = -600.0
HU_BONE_TAIL = 800.0
SAMPLES_PER_CASE = 10000
SAMPLE_SEED = 1234


def lesion_voxel_sample(label: np.ndarray, image: np.ndarray, samples: int = SAMPLES_PER_CASE,
                        seed: int = SAMPLE_SEED) -> np.ndarray:
    """`samples` values of `image` inside `label` > 0, drawn with replacement (empty when no lesion)."""
    values = np.asarray(image)[np.asarray(label) > 0]
    if values.size == 0:
        return values.astype(np.float32)
    return np.random.RandomState(seed).choice(values, samples, replace=True).astype(np.float32)


def summarise(values: np.ndarray) -> dict[str, float]:
    """p0.5, median, mean, p99.5 and max of pooled samples."""
    return {"p0.5": float(np.percentile(values, 0.5)), "median": float(np.median(values)),
            "mean": float(np.mean(values)), "p99.5": float(np.percentile(values, 99.5)), "max": float(np.max(values))}


@dataclass
class CohortRealism:
    """Pooled lesion-voxel statistics and lesion sizes of a cohort."""

    cases: int
    cases_with_lesions: int
    suv: dict[str, float]
    hu: dict[str, float]
    lesion_ml: list[float]

    def size_summary(self) -> dict[str, float]:
        v = np.asarray(self.lesion_ml, float)
        if v.size == 0:
            return {"lesions": 0}
        return {"lesions": int(v.size), "min_ml": float(v.min()), "median_ml": float(np.median(v)),
                "max_ml": float(v.max()), "sub_ml_fraction": float(np.mean(v < 1.0)),
                "bulky_100_400": int(np.sum((v >= 100.0) & (v <= 400.0)))}

    def checks(self) -> dict[str, bool]:
        """The calibration targets (see the module constants), each True when met."""
        real = REAL_AUTOPET["suv"]
        return {
            "suv_median_within_20%": abs(self.suv["median"] / real["median"] - 1.0) <= SUV_RELATIVE_TOLERANCE,
            "suv_p99.5_within_20%": abs(self.suv["p99.5"] / real["p99.5"] - 1.0) <= SUV_RELATIVE_TOLERANCE,
            "suv_p0.5_within_0.3": abs(self.suv["p0.5"] - real["p0.5"]) <= SUV_P05_TOLERANCE,
            "hu_p0.5_reaches_lung": self.hu["p0.5"] <= HU_LUNG_TAIL,
            "hu_p99.5_reaches_bone": self.hu["p99.5"] >= HU_BONE_TAIL,
        }


def cohort_realism(cases: Iterable) -> CohortRealism:
    """Statistics of cases with `.label`, `.pet`, `.ct` arrays and `.meta["lesions"]` (PhantomCase)."""
    suv, hu, volumes = [], [], []
    n = 0
    for case in cases:
        n += 1
        s = lesion_voxel_sample(case.label, case.pet)
        if s.size == 0:
            continue
        suv.append(s)
        hu.append(lesion_voxel_sample(case.label, case.ct))
        volumes += [float(les["volume_ml"]) for les in case.meta.get("lesions", [])]
    if not suv:
        raise ValueError("no case of the cohort has a lesion: nothing to measure")
    return CohortRealism(n, len(suv), summarise(np.concatenate(suv)), summarise(np.concatenate(hu)), volumes)
