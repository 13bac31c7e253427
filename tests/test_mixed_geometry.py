"""Mixed shapes and spacings, as in the real autoPET set (400x400 at 2 mm and 168x168 at 4 mm, 2-5 mm
slices): phantoms of two grids train (resampled to one spacing, padded to the ROI), validate and predict
on each case's own PET grid."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    from petclick.phantoms import generate_cohort

    root = tmp_path_factory.mktemp("mixed")
    entries = []
    for name, shape, spacing, seed in (("fine", (40, 40, 36), (2.0, 2.0, 3.0), 3), ("coarse", (20, 20, 48), (4.0, 4.0, 2.0), 4)):
        data = json.loads(generate_cohort(root / name, cases=3, seed=seed, shape=shape, spacing=spacing).read_text())
        for e in data["training"] + data["testing"]:
            e = {k: (str(root / name / v) if k in ("image", "pet", "label", "clicks") else v) for k, v in e.items()
                 if k != "organs"}
            entries.append(e)
    for n, e in enumerate(entries):
        e["fold"] = n % 2
    path = root / "datalist.json"
    path.write_text(json.dumps({"num_folds": 2, "training": entries}))
    return path


def test_mixed_shapes_and_spacings_train_validate_and_predict(mixed, tmp_path):
    import nibabel as nib

    from petclick.config.presets import get_preset
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.io.clickfile import read_clicks
    from petclick.io.images import load_case
    from petclick.training.loop import train_fold
    from petclick.training.plan import make_plan

    entries = json.loads(mixed.read_text())["training"]
    grids = {(nib.load(e["pet"]).shape, tuple(round(float(z), 2) for z in nib.load(e["pet"]).header.get_zooms()))
             for e in entries}
    assert len(grids) == 2
    cfg = get_preset("demo")
    cfg["network"]["kwargs"] = {"init_filters": 4, "blocks_down": [1, 1, 1], "dsdepth": 1}
    cfg["data"].update(spacing=[3.0, 3.0, 3.0], roi=[16, 16, 16], num_workers=0, cache_dir=None)
    cfg["infer"].update(roi=[16, 16, 16])
    cfg["training"].update(num_epochs=1, num_iterations_per_epoch=2, val_every=1, repeats="independent",
                           device="cpu")
    cfg.update(fold=0, num_repeats=1, ckpt_path=str(tmp_path / "model"), datalist=str(mixed), dataroot=str(mixed.parent))
    scores = train_fold(cfg)
    assert set(scores) == {0} and 0.0 <= scores[0] <= 1.0
    # the plan sees both grids and the target spacing
    shapes = [(nib.load(e["pet"]).shape, nib.load(e["pet"]).header.get_zooms()) for e in entries]
    plan = make_plan(cfg, shapes, 3, 3, available=2**34)
    assert plan.spacing == [3.0, 3.0, 3.0] and plan.voxels_max >= plan.voxels_mean >= 16**3
    model = tmp_path / "model" / "repeat0" / "model.pt"
    predictor = EnsemblePredictor([model])
    for e in entries[:1] + entries[-1:]:  # one case of each grid, back on its own PET grid
        case = load_case(e["image"], e["pet"], e.get("label"))
        prob = predictor.predict(case, read_clicks(e["clicks"]).first(1))
        assert prob.shape == case.pet.array.shape and np.isfinite(prob).all()
