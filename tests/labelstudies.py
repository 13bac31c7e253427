"""A small autoPET-layout studies folder for the label app's tests, and tiny untrained checkpoints.

Cases (32x28x40 phantoms):
- fdg_0001_2020, psma_0002_2021: ordinary pairs (RAS affine);
- fdg_0003_2020: both images on a flipped, shifted affine (i runs right to left), so a click's index
  must be used as the file's index, not a reoriented one;
- fdg_0009_2020: CT on a different grid from its PET (the pair does not match);
- fdg_0010_2020: a CT without its PET.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import strategies as st

SHAPE = (32, 28, 40)
GOOD = ("fdg_0001_2020", "psma_0002_2021")
FLIPPED, MISMATCHED, NO_PET = "fdg_0003_2020", "fdg_0009_2020", "fdg_0010_2020"
ALL_IDS = (*GOOD, FLIPPED, MISMATCHED, NO_PET)
KWARGS = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
ROI = [16, 16, 16]


def write_studies(root: Path) -> Path:
    """The studies folder above under `root` (returned)."""
    from petclick.io.images import save_volume
    from petclick.phantoms.case import generate_case
    from petclick.phantoms.cohort import write_case

    for n, cid in enumerate(GOOD):
        write_case(root, generate_case(cid, n, shape=SHAPE, tracer=cid[:4].rstrip("_")))
    flipped = generate_case(FLIPPED, 3, shape=SHAPE, tracer="fdg")
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = 120.0
    flipped.affine = flip @ flipped.affine
    write_case(root, flipped)
    bad = generate_case(MISMATCHED, 9, shape=SHAPE, tracer="fdg")
    write_case(root, bad)
    save_volume(root / "imagesTr" / f"{MISMATCHED}_0000.nii.gz", np.zeros((30, 28, 40), np.int16), bad.affine)
    lone = generate_case(NO_PET, 10, shape=SHAPE, tracer="fdg")
    write_case(root, lone)
    (root / "imagesTr" / f"{NO_PET}_0001.nii.gz").unlink()
    return root


def write_tiny_models(root: Path, seeds=(0, 1)) -> Path:
    """Untrained 2-level SegResNetDS checkpoints (16^3 windows, overlap 0.25), one folder each."""
    import torch

    from petclick.networks.factory import build_network
    from petclick.runtime.checkpoint import save_checkpoint

    for seed in seeds:
        torch.manual_seed(seed)
        net = build_network("segresnet", 4, 1, **KWARGS)
        save_checkpoint(root / f"r{seed}" / "model.pt", {
            "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": KWARGS},
            "in_channels": 4, "out_channels": 1,
            "preprocess": {"roi": ROI, "crop_body": False, "encoding": {"encoding": "edt", "channels": "two"}},
            "infer": {"roi": ROI, "overlap": 0.25, "sw_batch_size": 2}})
    return root


def lesion_voxel(root: Path, case: str) -> tuple[int, int, int]:
    """A voxel of the case's first lesion (its label's centre of mass, snapped onto the label)."""
    import nibabel as nib

    label = np.asarray(nib.load(str(root / "labelsTr" / f"{case}.nii.gz")).dataobj) > 0
    idx = np.argwhere(label)
    centre = idx.mean(axis=0)
    return tuple(int(v) for v in idx[np.argmin(((idx - centre) ** 2).sum(axis=1))])


# params of an infer request as a client might send them, well-formed or not (property-based tests)
_coordinates = st.one_of(st.integers(-3, 12), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.booleans(),
                         st.text(max_size=3), st.none())
_points = st.one_of(st.lists(st.lists(_coordinates, min_size=0, max_size=4), max_size=12),
                    st.lists(st.lists(st.integers(0, 9), min_size=3, max_size=3), max_size=12), _coordinates)
_json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
                            lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                            max_leaves=20)
params_objects = st.dictionaries(st.sampled_from(["tumor", "background", "foreground", "label", "client_id",
                                                  "result_extension", "roi", "x"]),
                                 st.one_of(_points, _json_values), max_size=5)
