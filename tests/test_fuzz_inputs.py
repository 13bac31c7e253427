"""Fuzzing every command with generated click files and image variants (hypothesis).

Each generated input goes through the commands in-process (petclick.cli.main) on a tiny 10x9x8
case. An oracle, written from the rules of petclick.io (clickfile.py, clickpolicy.py, images.py),
says what must happen; every outcome must be one of:
- exit 0 with the input used as given (the click counts the command reports equal the file's);
- exit 0 with a warning for each thing dropped or repaired (and the counts of what was kept);
- exit 2 with one line naming the bad file.
Any traceback, any other exit code, or a change without its warning fails the test.
$FUZZ_CLICKS / $FUZZ_IMAGES set the number of examples (80 each by default: about 25 s on the
2-core CPU machine under load; 500 and 400 examples passed in 142 s).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from petclick.cli import main
from petclick.io.images import save_volume
from petclick.io.sitk import save_mha
from tinycase import AFFINE, SHAPE, tiny_arrays

CASE = "fdg_fz_1"
BUDGET = 10
def fuzz(env: str, default: int) -> settings:
    """Hypothesis settings of one fuzz test: no deadline (file I/O), `default` examples ($env overrides)."""
    return settings(max_examples=int(os.environ.get(env, default)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ---- the tiny case and the commands ----------------------------------------------------------

@dataclass
class Case:
    """File paths of one fuzz case: the autoPET layout, the grand-challenge input, a datalist."""

    root: Path
    files: dict = field(default_factory=dict)

    @property
    def clicks(self) -> Path:
        return self.root / "clicks" / f"{CASE}_clicks.json"

    @property
    def gc_clicks(self) -> Path:
        return self.root / "gc" / "lesion-clicks.json"


def write_case(root: Path, arrays: dict) -> Case:
    case = Case(root)
    case.files = {
        "ct": save_volume(root / "imagesTr" / f"{CASE}_0000.nii.gz", arrays["ct"], AFFINE),
        "pet": save_volume(root / "imagesTr" / f"{CASE}_0001.nii.gz", arrays["pet"], AFFINE),
        "label": save_volume(root / "labelsTr" / f"{CASE}.nii.gz", arrays["label"], AFFINE),
        "gc_ct": save_mha(root / "gc" / "images" / "ct" / "u.mha", arrays["ct"], affine=AFFINE),
        "gc_pet": save_mha(root / "gc" / "images" / "pet" / "u.mha", arrays["pet"], affine=AFFINE),
    }
    (root / "pred").mkdir()
    shutil.copy(case.files["label"], root / "pred" / f"{CASE}.nii.gz")
    case.files["pred"] = root / "pred" / f"{CASE}.nii.gz"
    dl = {"testing": [{"image": str(case.files["ct"]), "pet": str(case.files["pet"]),
                       "label": str(case.files["label"]), "clicks": str(case.clicks)}]}
    (root / "dl.json").write_text(json.dumps(dl))
    return case


def write_clicks(case: Case, raw: bytes) -> None:
    for path in (case.clicks, case.gc_clicks):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)


COMMANDS = ("simulate-clicks", "predict", "gc", "interactive", "datalist", "evaluate")
CLICK_COMMANDS = COMMANDS[:5]


def argv(command: str, case: Case, out: Path) -> list[str]:
    f = case.files
    return {
        "simulate-clicks": ["simulate-clicks", "--label", str(f["label"]), "--pet", str(f["pet"]), "--check",
                            str(case.clicks)],
        "predict": ["predict", "--models", "suv-threshold", "--ct", str(f["ct"]), "--pet", str(f["pet"]), "--clicks",
                    str(case.clicks), "--no-progress", "--out", str(out)],
        "gc": ["gc", "--input", str(case.root / "gc"), "--output", str(out), "--models", "suv-threshold"],
        "interactive": ["interactive", "--predictor", "suv-threshold", "--datalist", str(case.root / "dl.json"),
                        "--out", str(out), "--no-mip"],
        "datalist": ["datalist", "--dataroot", str(case.root), "--folds", "1", "--out", str(out / "datalist.json")],
        "evaluate": ["evaluate", "--gt", str(case.root / "labelsTr"), "--pred", str(case.root / "pred"), "--images",
                     str(case.root / "imagesTr"), "--out", str(out)],
    }[command]


def run(command: str, case: Case, out: Path, caplog, capsys) -> tuple[int, str, str, str]:
    """(exit code, stdout, stderr, log text) of one in-process CLI call; a traceback fails the test."""
    caplog.clear()
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        try:
            rc = main(argv(command, case, out))
        except SystemExit as exc:          # argparse: not expected for these command lines
            rc = exc.code
    captured = capsys.readouterr()
    assert rc in (0, 2), f"{command}: exit {rc}\n{captured.err}"
    return rc, captured.out, captured.err, caplog.text


def reported_counts(command: str, out: Path, stdout: str) -> tuple[int, int] | None:
    """(tumour, background) clicks the command says it used."""
    if command == "predict":
        row = json.loads((out / "predict.json").read_text())["cases"][0]
        return row["n_tumor_clicks"], row["n_background_clicks"]
    if command == "gc":
        job = json.loads((out / "petclick-input-report.json").read_text())["jobs"][0]
        return job["n_tumor_clicks"], job["n_background_clicks"]
    if command == "simulate-clicks":
        words = stdout.split()
        return int(words[1]), int(words[words.index("background") - 1])
    if command == "interactive":
        with (out / "cases.csv").open(newline="") as fh:
            step10 = [r for r in csv.DictReader(fh) if r["step"] == "10"][0]
        return int(step10["n_tumor_clicks"]), int(step10["n_background_clicks"])
    return None


# ---- generated click files and their oracle --------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD_POINTS = [["4", 1, 1], [1, 2], [1, 2, 3, 4], [NAN, 1, 1], [1, INF, 1], [1, 1, -INF], [1.5, 1, 1], [True, 1, 1],
              [None, 1, 1], "x", [[1], 1, 1], {}, []]
OUTSIDE = [[10, 0, 0], [0, 9, 0], [0, 0, 8], [-1, 0, 0], [10 ** 6, 0, 0]]
BAD_NAMES = ["lesion", "tumor ", "Tumor", "", None, 3, "background\n"]
FILE_ERRORS = {"{bad json": "malformed JSON", "BOMB": "nested too deeply", "[[1, 2, 3]]": "must hold a JSON object",
               '{"clicks": []}': "unknown click-file schema", "7": "must hold a JSON object"}
EMPTY = {"": "the file is empty", "null": "the file holds null", "[]": "the file holds []", "{}": "the file holds {}"}
ENCODINGS = {"utf-8": None, "utf-8-sig": "UTF-8 byte-order mark", "utf-16": "UTF-16 text with a byte-order mark",
             "utf-16-le": "UTF-16-LE text without a byte-order mark"}


@dataclass
class ClickFile:
    """A generated click file and what the rules say about it."""

    raw: bytes
    good: dict               # kind -> good clicks in file order
    n_bad: int               # malformed entries, outside clicks, repeated/unknown keys, kinds over the budget
    file_error: str | None   # message when the file cannot be read at all
    notes: list              # warnings every policy gives (encoding, empty file)

    @property
    def strict_ok(self) -> bool:
        return self.file_error is None and self.n_bad == 0


def _pairs_text(pairs) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


@st.composite
def click_files(draw) -> ClickFile:
    fmt = draw(st.sampled_from(["plain", "gc"]))
    encoding = draw(st.sampled_from(list(ENCODINGS)))
    notes = [ENCODINGS[encoding]] if ENCODINGS[encoding] else []
    whole = draw(st.sampled_from([None] * 8 + list(FILE_ERRORS) + list(EMPTY)))
    if whole is not None:
        raw = ("[" * 100_000 if whole == "BOMB" else whole).encode(encoding)
        notes = notes if raw else []             # no bytes: nothing says how they were encoded
        notes += [f"{EMPTY[whole]}: no clicks (step 0)"] if whole in EMPTY else []
        return ClickFile(raw, {"tumor": [], "background": []}, 0, FILE_ERRORS.get(whole), notes)
    kinds = {"tumor": st.tuples(st.integers(0, 4), st.integers(0, 8), st.integers(0, 7)),
             "background": st.tuples(st.integers(5, 9), st.integers(0, 8), st.integers(0, 7))}
    entries, good, n_bad = {}, {}, 0
    for kind, points in kinds.items():
        good[kind] = [list(p) for p in draw(st.lists(points, max_size=BUDGET + 2))]
        items = [("point", p, kind) for p in good[kind]]
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
            what = draw(st.sampled_from(["bad", "outside"] + (["name"] if fmt == "gc" else [])))
            raw = draw(st.sampled_from(OUTSIDE if what == "outside" else BAD_POINTS if what == "bad" else [[1, 1, 1]]))
            name = draw(st.sampled_from(BAD_NAMES)) if what == "name" else kind
            items.insert(draw(st.integers(0, len(items))), ("point", raw, name))
            n_bad += 1
        n_bad += len(good[kind]) > BUDGET
        entries[kind] = items
    repeated, unknown = (draw(st.sampled_from([False, False, False, True])) for _ in range(2))
    n_bad += repeated + unknown
    if fmt == "plain":
        t, b = ([p for _, p, _ in entries[kind]] for kind in ("tumor", "background"))
        half = len(t) // 2
        pairs = [("tumor", t[:half]), ("background", b), ("tumor", t[half:])] if repeated else [("tumor", t), ("background", b)]
        pairs += [("lesions", [[1, 1, 1]])] if unknown else []
    else:
        points = [{"point": p, "name": n} for _, p, n in entries["tumor"] + entries["background"]]
        pairs = [("version", {"major": 1, "minor": 0}), ("type", "Multiple points")]
        pairs += [("points", points[:3]), ("points", points[3:])] if repeated else [("points", points)]
        pairs += [("tumor", [[1, 1, 1]])] if unknown else []
    return ClickFile(_pairs_text(pairs).encode(encoding), good, n_bad, None, notes)


@pytest.fixture(scope="module")
def click_case(tmp_path_factory):
    return write_case(tmp_path_factory.mktemp("fuzz_clicks"), tiny_arrays())


@fuzz("FUZZ_CLICKS", 80)
@given(cf=click_files(), data=st.data())
def test_click_files_through_every_command(click_case, tmp_path_factory, caplog, capsys, cf, data):
    write_clicks(click_case, cf.raw)
    out_root = tmp_path_factory.mktemp("out")
    # two commands per example (all five over the run) keep the file within the suite's time budget
    for command in data.draw(st.lists(st.sampled_from(CLICK_COMMANDS), min_size=2, max_size=2, unique=True)):
        out = out_root / command
        rc, stdout, stderr, logs = run(command, click_case, out, caplog, capsys)
        event(f"{command}: exit {rc}" + (", drops" if cf.n_bad and rc == 0 else ""))
        expect = {"tumor": cf.good["tumor"][:BUDGET], "background": cf.good["background"][:BUDGET]}
        if command == "gc":                           # lenient: never fails over its clicks
            assert rc == 0, stderr
            job = json.loads((out / "petclick-input-report.json").read_text())["jobs"][0]
            if cf.file_error:
                assert cf.file_error in job["error"] and str(click_case.gc_clicks) in job["error"]
                assert "predicting without clicks (step 0)" in logs
                expect = {"tumor": [], "background": []}
            else:
                assert job["error"] is None and len(job["dropped"]) == cf.n_bad, job["dropped"]
                assert logs.count("dropped") >= min(cf.n_bad, 1)
        elif not cf.strict_ok:                        # strict: exit 2, one line naming the click file
            assert rc == 2, (command, stdout, logs)
            assert str(click_case.clicks) in stderr and len(stderr.strip().splitlines()) == 1, stderr
            continue
        else:
            assert rc == 0, (command, stderr)
        for note in cf.notes if cf.file_error is None else ():
            assert note in logs, (command, note, logs)
        counts = reported_counts(command, out, stdout)
        if counts is not None:
            assert counts == (len(expect["tumor"]), len(expect["background"])), (command, counts)
        if command == "predict" and cf.strict_ok:     # clicks used as given: each tumour click is in the mask
            mask = nib.load(str(out / f"{CASE}.nii.gz")).get_fdata()
            assert all(mask[tuple(p)] == 1 for p in expect["tumor"])
            assert all(mask[tuple(p)] == 0 for p in expect["background"])


# ---- generated image variants ----------------------------------------------------------------

PET_VARIANTS = {"ok": None, "nan": "NaN", "negative": "negative", "inf": "NaN", "zero": "refuse", "all_nan": "refuse"}
CT_VARIANTS = {"ok": None, "nan": "NaN", "all_nan": "refuse"}
LABEL_VARIANTS = {"ok": None, "values_0_2": "binary", "4d": "3D"}
TRUNCATE = (None, "ct", "pet", "label")
READS = {   # which files each command reads
    "simulate-clicks": {"pet", "label"}, "predict": {"ct", "pet"}, "gc": {"ct", "pet"},
    "interactive": {"ct", "pet", "label"}, "datalist": {"ct", "pet", "label"}, "evaluate": {"pet", "label"},
}


def make_arrays(pet: str, ct: str, label: str, rng: np.random.Generator) -> dict:
    a = tiny_arrays()
    where = tuple(rng.integers(0, s, 4) for s in SHAPE)
    if pet == "nan":
        a["pet"][where] = np.nan
    elif pet == "negative":
        a["pet"][where] = -rng.uniform(0.1, 5.0)
    elif pet == "inf":
        a["pet"][where] = np.inf
    elif pet == "zero":
        a["pet"][:] = 0
    elif pet == "all_nan":
        a["pet"][:] = np.nan
    if ct == "nan":
        a["ct"][where] = np.nan
    elif ct == "all_nan":
        a["ct"][:] = np.nan
    if label == "values_0_2":
        a["label"] = (a["label"] * 2).astype(np.uint8)
    elif label == "4d":
        a["label"] = np.stack([a["label"], a["label"]], axis=-1)
    return a


def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[:-24])


@fuzz("FUZZ_IMAGES", 80)
@given(pet=st.sampled_from(["ok"] * 3 + list(PET_VARIANTS)), ct=st.sampled_from(["ok"] * 3 + list(CT_VARIANTS)),
       label=st.sampled_from(["ok"] * 4 + list(LABEL_VARIANTS)), cut=st.sampled_from([None] * 6 + list(TRUNCATE)),
       seed=st.integers(0, 2 ** 16),
       command=st.sampled_from(COMMANDS))
def test_image_variants_through_every_command(tmp_path_factory, caplog, capsys, pet, ct, label, cut, seed, command):
    root = tmp_path_factory.mktemp("fuzz_images")
    case = write_case(root, make_arrays(pet, ct, label, np.random.default_rng(seed)))
    write_clicks(case, json.dumps({"tumor": [[2, 3, 3]], "background": [[8, 7, 6]]}).encode())
    if cut is not None:
        truncate(case.files[cut])
        if cut in ("ct", "pet"):
            truncate(case.files[f"gc_{cut}"])
        if cut == "label":
            truncate(case.files["pred"])
    reads = READS[command]
    files = {"ct": case.files["gc_ct" if command == "gc" else "ct"],
             "pet": case.files["gc_pet" if command == "gc" else "pet"], "label": case.files["label"]}
    refused = {f for f, bad in (("pet", PET_VARIANTS[pet] == "refuse"), ("ct", CT_VARIANTS[ct] == "refuse"),
                                ("label", LABEL_VARIANTS[label] is not None), (cut, cut is not None))
               if bad and f in reads}
    rc, stdout, stderr, logs = run(command, case, root / "out", caplog, capsys)
    event(f"{command}: exit {rc}")
    if refused:
        assert rc == 2, (command, refused, logs)
        named = [f for f in refused if str(files[f]) in stderr
                 or (f == "label" and command == "evaluate" and str(case.files["pred"]) in stderr)]
        assert named and len(stderr.strip().splitlines()) == 1, (command, refused, stderr)
        return
    assert rc == 0, (command, stderr)
    repairs_pet = PET_VARIANTS[pet] in ("NaN", "negative") and "pet" in reads
    repairs_ct = CT_VARIANTS[ct] == "NaN" and "ct" in reads
    pet_words = "NaN/infinite and" if PET_VARIANTS[pet] == "NaN" else "negative SUV voxel(s) set to 0"
    if repairs_pet:
        assert pet_words in logs and str(files["pet"]) in logs, (command, logs)
    else:
        assert "SUV voxel(s) set to 0" not in logs
    if repairs_ct:
        assert "CT voxel(s) set to -1000 HU" in logs and str(files["ct"]) in logs, (command, logs)
    else:
        assert "CT voxel(s) set to" not in logs
