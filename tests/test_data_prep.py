"""Real-data preparation in one pass: bulk click simulation (parallel, resumable), a test split of whole
patients balanced by tracer, and missing click files refused or warned about where they would score 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from petclick.cli import main
from petclick.io.images import save_volume

SHAPE = (12, 12, 10)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> Path:
    """An autoPET-layout folder: 6 FDG patients and 3 PSMA patients, 2 studies each, no clicks/."""
    root = tmp_path_factory.mktemp("prep")
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for tracer, n in (("fdg", 6), ("psma", 3)):
        for p in range(n):
            for date in ("01-01-2020", "02-02-2021"):
                case = f"{tracer}_{tracer}{p:02d}_{date}"
                pet = 1.0 + rng.random(SHAPE).astype(np.float32)
                label = np.zeros(SHAPE, np.uint8)
                if p % 3:  # some lesion-free studies
                    label[3:6, 3:6, 3:5] = 1
                    pet[3:6, 3:6, 3:5] = 8.0
                save_volume(root / "imagesTr" / f"{case}_0000.nii.gz", np.zeros(SHAPE, np.float32), AFFINE)
                save_volume(root / "imagesTr" / f"{case}_0001.nii.gz", pet, AFFINE)
                save_volume(root / "labelsTr" / f"{case}.nii.gz", label, AFFINE)
    return root


def test_datalist_test_fraction_holds_out_whole_patients_of_both_tracers(dataroot, tmp_path, capsys, caplog):
    from petclick.io.datalist import parse_case_id, select_test_cases

    out = tmp_path / "datalist.json"
    assert main(["datalist", "--dataroot", str(dataroot), "--out", str(out), "--test-fraction", "0.34"]) == 0
    printed = capsys.readouterr().out
    assert "WARNING: 18 case(s) have no click file" in printed and "simulate-clicks --dataroot" in printed
    assert "no clicks/ folder" in caplog.text
    data = json.loads(out.read_text())
    test = [parse_case_id(e["case"]) for e in data["testing"]]
    train = [parse_case_id(e["case"]) for e in data["training"]]
    assert {c.tracer for c in test} == {"fdg", "psma"}
    assert not {c.patient for c in test} & {c.patient for c in train}  # whole patients
    assert sum(c.tracer == "fdg" for c in test) == 4 and sum(c.tracer == "psma" for c in test) == 2
    assert len(train) == 12 and all("label" in e for e in data["testing"])
    ids = [e["case"] for e in data["training"] + data["testing"]]
    assert select_test_cases(ids, 0.34, 0) == sorted(e["case"] for e in data["testing"])  # reproducible
    assert main(["datalist", "--dataroot", str(dataroot), "--out", str(out), "--test-fraction", "1.5"]) == 2


def test_simulate_clicks_dataroot_is_parallel_and_resumes(dataroot, tmp_path, capsys):
    from petclick.io.clickfile import read_clicks

    out = tmp_path / "clicks"
    argv = ["simulate-clicks", "--dataroot", str(dataroot), "--out-dir", str(out), "--jobs", "2", "--no-progress"]
    assert main(argv) == 0
    assert "18 click files written, 0 already there" in capsys.readouterr().out
    files = sorted(out.glob("*_clicks.json"))
    assert len(files) == 18
    lesion = read_clicks(out / "fdg_fdg01_01-01-2020_clicks.json")
    assert lesion.tumor and all(3 <= p[0] < 6 and 3 <= p[2] < 5 for p in lesion.tumor)
    assert not read_clicks(out / "fdg_fdg00_01-01-2020_clicks.json").tumor  # lesion-free: background only
    files[0].unlink()
    files[1].write_text("{")  # a half-written file is simulated again
    assert main(argv) == 0
    assert "2 click files written, 16 already there (resumed)" in capsys.readouterr().out
    assert main(["simulate-clicks", "--dataroot", str(dataroot), "--label", "x"]) == 2


def test_training_refuses_click_validation_without_click_files(tiny_cohort, tmp_path):
    from petclick.core.errors import InputError
    from petclick.training.data import fold_files, require_clicks

    files = fold_files(tiny_cohort, tiny_cohort.parent, 0)
    require_clicks(files.val, [0, 5, 10], tiny_cohort)  # every phantom has its clicks
    stripped = [{k: v for k, v in f.items() if k != "clicks"} for f in files.val]
    with pytest.raises(InputError, match="no click file.*would score 0 clicks.*simulate-clicks --dataroot"):
        require_clicks(stripped, [0, 5, 10], tiny_cohort)
    require_clicks(stripped, [0], tiny_cohort)  # step 0 needs no clicks
