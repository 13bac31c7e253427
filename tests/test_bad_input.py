"""Bad input across commands (issue 19): PET/CT values treated alike everywhere, datalist validation
and --skip-bad, atomic outputs under SIGKILL, concurrent predictions into one folder."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from petclick.cli import main
from petclick.core.atomic import atomic_write_text, is_temp_name
from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks, write_clicks
from petclick.io.images import checked_ct, checked_pet, load_case, load_volume, save_volume, Volume
from petclick.io.runrecord import merge_cases
from petclick.io.sitk import save_mha
from tinycase import AFFINE, SHAPE, tiny_arrays



def tiny_case_arrays():
    a = tiny_arrays()
    return a["ct"], a["pet"], a["label"]


def write_case(root: Path, case: str = "fdg_a_1", ct=None, pet=None, label=None, clicks=True) -> dict:
    """A tiny case in the autoPET layout; returns its file paths."""
    c, p, lab = tiny_case_arrays()
    files = {"ct": save_volume(root / "imagesTr" / f"{case}_0000.nii.gz", c if ct is None else ct, AFFINE),
             "pet": save_volume(root / "imagesTr" / f"{case}_0001.nii.gz", p if pet is None else pet, AFFINE),
             "label": save_volume(root / "labelsTr" / f"{case}.nii.gz", lab if label is None else label, AFFINE)}
    if clicks:
        files["clicks"] = write_clicks(root / "clicks" / f"{case}_clicks.json", Clicks([(3, 3, 3)], [(8, 7, 6)]))
    return files


# ---- one treatment of PET/CT values in every command -------------------------------------------

def _variants():
    ct, pet, _ = tiny_case_arrays()
    nan_pet = pet.copy()
    nan_pet[0, 0, :3] = np.nan
    nan_pet[1, 0, 0] = -2.0
    nan_ct = ct.copy()
    nan_ct[0, 0, :4] = np.nan
    return {
        "pet_nan_negative": ({"pet": nan_pet}, 0, "3 NaN/infinite and 1 negative SUV voxel(s) set to 0", "_0001"),
        "pet_all_zero": ({"pet": np.zeros(SHAPE, np.float32)}, 2, "PET holds no uptake", "_0001"),
        "pet_all_nan": ({"pet": np.full(SHAPE, np.nan, np.float32)}, 2, "PET holds no uptake", "_0001"),
        "ct_nan": ({"ct": nan_ct}, 0, "4 NaN/infinite CT voxel(s) set to -1000 HU (air)", "_0000"),
        "ct_all_nan": ({"ct": np.full(SHAPE, np.nan, np.float32)}, 2, "CT holds no finite value", "_0000"),
    }


def run_command(command: str, files: dict, root: Path) -> list[str]:
    """argv of `command` on the case `files` (in `root`), writing under root/out_<command>."""
    out = root / f"out_{command}"
    if command == "predict":
        return ["predict", "--models", "suv-threshold", "--ct", str(files["ct"]), "--pet", str(files["pet"]),
                "--clicks", str(files["clicks"]), "--no-progress", "--out", str(out)]
    if command == "interactive":
        dl = root / "dl.json"
        dl.write_text(json.dumps({"testing": [{"image": str(files["ct"]), "pet": str(files["pet"]),
                                               "label": str(files["label"]), "clicks": str(files["clicks"])}]}))
        return ["interactive", "--predictor", "suv-threshold", "--datalist", str(dl), "--out", str(out), "--no-mip"]
    if command == "simulate-clicks":
        return ["simulate-clicks", "--label", str(files["label"]), "--pet", str(files["pet"]), "--check",
                str(files["clicks"])]
    if command == "datalist":
        return ["datalist", "--dataroot", str(root), "--folds", "1", "--out", str(root / "datalist.json")]
    if command == "evaluate":
        return ["evaluate", "--gt", str(root / "labelsTr"), "--pred", str(root / "labelsTr"), "--images",
                str(root / "imagesTr"), "--out", str(out)]
    if command == "gc":
        gc_in = root / "gc_in"
        for name in ("ct", "pet"):
            save_mha(gc_in / "images" / name / "uuid.mha", nib.load(str(files[name])).get_fdata(dtype=np.float32), affine=AFFINE)
        (gc_in / "lesion-clicks.json").write_text(json.dumps(Clicks([(3, 3, 3)], []).to_gc()))
        return ["gc", "--input", str(gc_in), "--output", str(out), "--models", "suv-threshold"]
    raise ValueError(command)


COMMANDS_READING_CT = ("predict", "interactive", "datalist", "gc")
COMMANDS_READING_PET = ("predict", "interactive", "datalist", "gc", "simulate-clicks", "evaluate")


@pytest.mark.parametrize("variant", list(_variants()))
def test_pet_and_ct_values_get_the_same_treatment_in_every_command(tmp_path, caplog, capsys, variant):
    arrays, code, message, channel = _variants()[variant]
    commands = COMMANDS_READING_CT if "ct" in arrays else COMMANDS_READING_PET
    for command in commands:
        root = tmp_path / command
        files = write_case(root, **arrays)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rc = main(run_command(command, files, root))
        err = capsys.readouterr().err
        assert rc == code, (command, err)
        text = caplog.text if code == 0 else err
        assert message in text, (command, text)
        named = "uuid.mha" if command == "gc" else f"fdg_a_1{channel}.nii.gz"
        if code == 2 or command != "datalist":
            assert named in text, (command, text)


def test_checked_values_directly():
    ct, pet, _ = tiny_case_arrays()
    pet[0, 0, 0] = np.inf
    out = checked_pet(Volume(pet, AFFINE, Path("p.nii.gz")))
    assert out.array[0, 0, 0] == 0 and np.isfinite(out.array).all()
    assert checked_ct(Volume(ct, AFFINE)).array is ct                      # nothing to repair: unchanged
    only_inf = np.zeros(SHAPE, np.float32)
    only_inf[0, 0, 0] = np.inf                                             # +inf is no uptake either
    with pytest.raises(InputError, match="p.nii.gz: PET holds no uptake"):
        checked_pet(Volume(only_inf, AFFINE, Path("p.nii.gz")))


def test_all_air_ct_is_not_cropped_to_nothing(tmp_path):
    """A CT with no voxel above the window's lower bound: the whole image is used, no shape error."""
    from petclick.runtime.preprocess import prepare_arrays, preprocess_config

    _, pet, _ = tiny_case_arrays()
    pet[0, 0, 0] = np.nan
    prepared = prepare_arrays(preprocess_config(None), np.full(SHAPE, -1000.0, np.float32), pet, AFFINE)
    assert tuple(prepared.image.shape) == (2, *SHAPE) and bool(np.isfinite(np.asarray(prepared.image)).all())


# ---- files: truncated, 4D, labels {0, 2} ------------------------------------------------------

def test_truncated_4d_and_non_binary_files_named_by_every_reader(tmp_path):
    files = write_case(tmp_path)
    raw = Path(files["pet"]).read_bytes()
    Path(files["pet"]).write_bytes(raw[:-24])                  # header intact, data and gzip trailer cut
    with pytest.raises(InputError, match="fdg_a_1_0001.nii.gz: cannot read the image data, the file is truncated"):
        load_case(files["ct"], files["pet"])
    four_d = save_volume(tmp_path / "x4d.nii.gz", np.zeros((*SHAPE, 2), np.float32), AFFINE)
    with pytest.raises(InputError, match=r"x4d.nii.gz: expected a 3D volume, got shape \(10, 9, 8, 2\)"):
        load_volume(four_d)
    assert load_volume(save_volume(tmp_path / "x41.nii.gz", np.ones((*SHAPE, 1), np.float32), AFFINE)).array.shape == SHAPE


# ---- datalist validates what it lists ---------------------------------------------------------

def test_datalist_refuses_bad_cases_and_skip_bad_lists_them(tmp_path, capsys):
    write_case(tmp_path, "fdg_ok_1")
    write_case(tmp_path, "fdg_nolabel2_1", label=np.where(tiny_case_arrays()[2] == 1, 2, 0).astype(np.uint8))
    files = write_case(tmp_path, "fdg_trunc_1")
    raw = Path(files["ct"]).read_bytes()
    Path(files["ct"]).write_bytes(raw[:-24])
    save_volume(tmp_path / "imagesTr" / "psma_4d_1_0000.nii.gz", np.zeros((*SHAPE, 2), np.float32), AFFINE)
    save_volume(tmp_path / "imagesTr" / "psma_4d_1_0001.nii.gz", np.ones(SHAPE, np.float32), AFFINE)
    save_volume(tmp_path / "labelsTr" / "psma_4d_1.nii.gz", np.zeros(SHAPE, np.uint8), AFFINE)
    write_clicks(tmp_path / "clicks" / "psma_4d_1_clicks.json", Clicks())
    nocase = write_case(tmp_path, "fdg_noct_1")
    os.remove(nocase["ct"])                                     # a missing CT: an error like a missing PET
    grid = write_case(tmp_path, "psma_grid_1")
    save_volume(grid["label"], tiny_case_arrays()[2], np.diag([2.0, 2.0, 2.0, 1.0]))
    clicks = write_case(tmp_path, "psma_click_1")
    Path(clicks["clicks"]).write_text('{"tumor": [[3, 3, 30]]}')
    out = tmp_path / "dl.json"
    assert main(["datalist", "--dataroot", str(tmp_path), "--folds", "2", "--out", str(out)]) == 2
    assert "fdg_noct_1_0000.nii.gz: missing CT file for case fdg_noct_1" in capsys.readouterr().err
    assert not out.exists()
    assert main(["datalist", "--dataroot", str(tmp_path), "--folds", "2", "--out", str(out), "--skip-bad"]) == 0
    listed = json.loads(out.read_text())
    assert [e["case"] for e in listed["training"]] == ["fdg_ok_1"]
    skipped = {s["case"]: s for s in json.loads((tmp_path / "dl.skipped.json").read_text())["skipped"]}
    assert set(skipped) == {"fdg_nolabel2_1", "fdg_trunc_1", "psma_4d_1", "fdg_noct_1", "psma_grid_1", "psma_click_1"}
    assert "label must be binary (0/1), found values 2" in skipped["fdg_nolabel2_1"]["reason"]
    assert skipped["fdg_nolabel2_1"]["file"].endswith("labelsTr/fdg_nolabel2_1.nii.gz")
    assert "truncated" in skipped["fdg_trunc_1"]["reason"] and skipped["fdg_trunc_1"]["file"].endswith("_0000.nii.gz")
    assert "expected a 3D volume" in skipped["psma_4d_1"]["reason"]
    assert "missing CT file" in skipped["fdg_noct_1"]["reason"]
    assert "label affine differs" in skipped["psma_grid_1"]["reason"]
    assert "outside the volume" in skipped["psma_click_1"]["reason"]
    assert "skipped 6 bad case(s)" in capsys.readouterr().out


def test_datalist_headers_only_still_finds_missing_files_and_4d(tmp_path, capsys):
    write_case(tmp_path, "fdg_ok_1")
    save_volume(tmp_path / "imagesTr" / "fdg_ok_2_0001.nii.gz", np.ones(SHAPE, np.float32), AFFINE)
    out = tmp_path / "dl.json"
    assert main(["datalist", "--dataroot", str(tmp_path), "--folds", "1", "--out", str(out), "--headers-only"]) == 2
    assert "fdg_ok_2_0000.nii.gz: missing CT file for case fdg_ok_2" in capsys.readouterr().err


def test_datalist_json_duplicate_keys_and_bad_entries(tmp_path):
    from petclick.io.datalist import load_datalist

    path = tmp_path / "d.json"
    path.write_text('{"training": [], "testing": [{"image": "a_0000.nii.gz", "pet": "p.nii.gz", "pet": "q.nii.gz"}]}')
    with pytest.raises(InputError, match=r"d.json: testing\[0\].pet: key repeated 2 times"):
        load_datalist(path)
    path.write_text('{"training": ["imagesTr/a_0000.nii.gz"]}')
    with pytest.raises(InputError, match=r"training\[0\] must be an object"):
        load_datalist(path)
    path.write_text('{"training": [{"image": "a_0000.nii.gz", "pet": null}]}')
    with pytest.raises(InputError, match=r"training\[0\].pet must be a file path, got None"):
        load_datalist(path)


# ---- atomic outputs ---------------------------------------------------------------------------

KILL_WRITER = """
import sys, numpy as np
from petclick.io.images import save_volume
from petclick.io.sitk import save_mha
from petclick.core.atomic import atomic_write_text
out = sys.argv[1]
big = np.random.default_rng(0).random((96, 96, 96)).astype(np.float32)
print("ready", flush=True)
n = 0
while True:
    save_volume(f"{out}/mask.nii.gz", big, np.eye(4))
    save_mha(f"{out}/mask.mha", big, affine=np.eye(4))
    atomic_write_text(f"{out}/predict.json", '{"n": %d, "pad": "%s"}' % (n, "x" * 200000))
    n += 1
"""


def test_sigkill_mid_write_leaves_nothing_or_a_complete_file(tmp_path):
    """Kill a writer at several moments: every final name holds a complete, readable file (or none)."""
    from petclick.io.sitk import load_mha

    (tmp_path / "w.py").write_text(KILL_WRITER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for n, delay in enumerate((0.05, 0.3, 0.7, 1.1)):
        out = tmp_path / f"o{n}"
        out.mkdir()
        proc = subprocess.Popen([sys.executable, str(tmp_path / "w.py"), str(out)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for name in ("mask.nii.gz", "mask.mha", "predict.json"):
            path = out / name
            if not path.exists():
                continue
            if name.endswith(".json"):
                assert json.loads(path.read_text())["n"] >= 0
            elif name.endswith(".mha"):
                assert load_mha(path).array.shape == (96, 96, 96)
            else:
                assert load_volume(path).array.shape == (96, 96, 96)
        assert all(is_temp_name(p) for p in out.iterdir() if p.name not in ("mask.nii.gz", "mask.mha", "predict.json"))


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = atomic_write_text(tmp_path / "r.json", '{"old": 1}')

    class Boom(Exception):
        pass

    from petclick.core.atomic import atomic_open
    with pytest.raises(Boom):
        with atomic_open(path) as fh:
            fh.write('{"new": ')
            raise Boom()
    assert json.loads(path.read_text()) == {"old": 1} and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_temp_files_of_killed_runs_are_not_taken_for_outputs(tmp_path):
    from petclick.metrics.files import find_predictions

    _, _, label = tiny_case_arrays()
    save_volume(tmp_path / "fdg_a_1.nii.gz", label, AFFINE)
    (tmp_path / ".tmp-1a2b3c4d-fdg_b_1.nii.gz").write_bytes(b"\x1f\x8b partial")
    assert list(find_predictions(tmp_path)) == ["fdg_a_1"]


# ---- concurrent runs into one folder ----------------------------------------------------------

def test_two_predictions_into_one_folder_keep_both_and_record_their_settings(tmp_path):
    roots = []
    for n, case in enumerate(("fdg_a_1", "fdg_b_1")):
        files = write_case(tmp_path / f"in{n}", case)
        roots.append(files)
    out = tmp_path / "out"
    codes = []

    def run(files, extra):
        codes.append(main(["predict", "--models", "suv-threshold", "--ct", str(files["ct"]), "--pet", str(files["pet"]),
                           "--clicks", str(files["clicks"]), "--no-progress", "--out", str(out), *extra]))

    threads = [threading.Thread(target=run, args=(roots[0], [])),
               threading.Thread(target=run, args=(roots[1], ["--postprocess", "off"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0, 0]
    record = json.loads((out / "predict.json").read_text())
    assert [c["case"] for c in record["cases"]] == ["fdg_a_1", "fdg_b_1"]
    runs = {c["case"]: record["runs"][c["run"]] for c in record["cases"]}
    assert runs["fdg_a_1"]["postprocess"]["click_consistency"]["enabled"] is True
    assert runs["fdg_b_1"]["postprocess"]["click_consistency"]["enabled"] is False
    for settings in runs.values():
        assert settings["tta_axes"] == [] and settings["checkpoints"] == [] and settings["click_policy"] == "strict"


def test_record_merge_under_many_concurrent_writers(tmp_path):
    path = tmp_path / "predict.json"

    def writer(n):
        for k in range(5):
            merge_cases(path, f"run{n}", {"tta_axes": [n]}, [{"case": f"c{n}_{k}"}])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = json.loads(path.read_text())
    assert len(record["cases"]) == 30 and set(record["runs"]) == {f"run{n}" for n in range(6)}
    assert all(record["runs"][c["run"]]["tta_axes"] == [int(c["case"][1])] for c in record["cases"])
    merge_cases(path, "run9", {}, [{"case": f"c0_{k}"} for k in range(5)])   # a re-run replaces run0's cases
    assert "run0" not in json.loads(path.read_text())["runs"]


def test_unmergeable_record_is_refused_before_any_work(tmp_path, capsys):
    files = write_case(tmp_path / "in")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "predict.json").write_text('["not", "a", "record"]')
    assert main(["predict", "--models", "suv-threshold", "--ct", str(files["ct"]), "--pet", str(files["pet"]),
                 "--no-progress", "--out", str(tmp_path / "out")]) == 2
    assert "predict.json: not a petclick run record" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix != ".lock") == ["predict.json"]
