"""Which tracer a PET shows (FDG or PSMA) when the metadata does not say: a rule on the coronal MIP.

The rule (explainable, two numbers): FDG makes the brain one of the hottest organs (SUV 6-9),
PSMA leaves it almost empty (SUV ~0.3) while the salivary glands and kidneys light up (10-40).
On the coronal maximum-intensity projection (max along the anterior-posterior axis):

- `brain_ratio` = 90th percentile of the MIP in the top 10% of the body's head-to-foot extent
  (the skull cap: brain, not yet salivary glands), divided by the median SUV of body voxels;
- `hot_ratio` = 99.9th percentile of the whole MIP (kidneys/salivary glands under PSMA) divided
  by the same head level.

FDG when brain_ratio >= 3, PSMA when brain_ratio < 1.5; in between, PSMA when hot_ratio >= 8.
On the phantoms brain_ratio is 9-18 for FDG and 0.9-1.5 for PSMA. The head-foot and
anterior-posterior axes come from the affine (RAS), so any voxel orientation works. The rule needs
the head in the scan; the learned alternative (petclick/runtime/tracer_model.py, `--tracer-model`)
reads both MIPs (`mip_views`) and replaces it when a checkpoint is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BODY_SUV = 0.2          # voxels above this are inside the body (air ~0)
HEAD_FRACTION = 0.10    # top share of the body's head-foot extent read as "brain"
FDG_BRAIN_RATIO = 3.0
PSMA_BRAIN_RATIO = 1.5
PSMA_HOT_RATIO = 8.0


@dataclass
class TracerGuess:
    """The classifier's answer and the numbers behind it."""

    tracer: str
    brain_ratio: float
    hot_ratio: float
    reason: str


def _axes(affine: np.ndarray) -> tuple[int, bool, int]:
    """(head-foot voxel axis, True when the head is at high indices, anterior-posterior voxel axis)."""
    lin = np.asarray(affine, float)[:3, :3]
    si = int(np.argmax(np.abs(lin[2])))
    ap_candidates = [a for a in range(3) if a != si]
    ap = max(ap_candidates, key=lambda a: abs(lin[1, a]))
    return si, bool(lin[2, si] > 0), ap


def mip_views(pet: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coronal (max along anterior-posterior) and sagittal (max along left-right) maximum-intensity
    projections of a PET volume, each 2D (in-plane axis, head-foot axis) with the head at the last
    index, whatever the voxel orientation (axes from the voxel-to-RAS affine); NaN read as 0."""
    pet = np.nan_to_num(np.asarray(pet, np.float32), nan=0.0)
    si, head_high, ap = _axes(affine)
    lr = 3 - si - ap
    views = []
    for axis in (ap, lr):
        mip = pet.max(axis=axis)
        mip = np.moveaxis(mip, si if si < axis else si - 1, -1)     # (other, si)
        views.append(mip if head_high else mip[:, ::-1])
    return views[0], views[1]


def classify_tracer(pet: np.ndarray, affine: np.ndarray) -> TracerGuess:
    """Guess "fdg" or "psma" from a PET volume (SUV) and its voxel-to-RAS affine; see the module docstring."""
    pet = np.nan_to_num(np.asarray(pet, np.float32), nan=0.0)
    mip = mip_views(pet, affine)[0]              # coronal, head at the last index
    body_rows = np.flatnonzero(mip.max(axis=0) > BODY_SUV)
    body = pet[pet > BODY_SUV]
    if body_rows.size == 0 or body.size == 0:
        return TracerGuess("fdg", float("nan"), float("nan"), "no body uptake found; assuming FDG")
    first, last = int(body_rows[0]), int(body_rows[-1])
    n = max(1, int(round(HEAD_FRACTION * (last - first + 1))))
    slab = mip[:, last - n + 1:last + 1]
    slab_body = slab[slab > BODY_SUV]
    head = float(np.percentile(slab_body, 90)) if slab_body.size else 0.0
    reference = float(np.median(body))
    brain_ratio = head / max(reference, 1e-6)
    hot_ratio = float(np.percentile(mip, 99.9)) / max(head, 1e-6)
    if brain_ratio >= FDG_BRAIN_RATIO:
        return TracerGuess("fdg", brain_ratio, hot_ratio, f"hot brain (ratio {brain_ratio:.1f} >= {FDG_BRAIN_RATIO})")
    if brain_ratio < PSMA_BRAIN_RATIO:
        return TracerGuess("psma", brain_ratio, hot_ratio, f"cold brain (ratio {brain_ratio:.1f} < {PSMA_BRAIN_RATIO})")
    tracer = "psma" if hot_ratio >= PSMA_HOT_RATIO else "fdg"
    return TracerGuess(tracer, brain_ratio, hot_ratio,
                       f"brain ratio {brain_ratio:.1f} undecided; hot-spot ratio {hot_ratio:.1f} -> {tracer}")
