"""Datalists (MONAI decathlon style) for the autoPET III/IV layout, with folds grouped by patient.

    <root>/imagesTr/<case>_0000.nii.gz   CT      <root>/imagesTr/<case>_0001.nii.gz   PET
    <root>/labelsTr/<case>.nii.gz        lesions <root>/clicks/<case>_clicks.json     clicks

A case is any id with a CT, a PET or a label file; `build_datalist` validates what it lists
(`validate_entry`): CT, PET and label present (a missing CT is an error like a missing PET),
every file readable to its last voxel and 3D, all on the PET's grid, labels binary, PET and CT
values as every command treats them (petclick.io.images: all-zero PET or all-NaN CT refused, NaN
voxels reported as repaired on load), click files valid for the PET's shape. The first bad case
raises InputError naming the file; with `skipped` a list instead collects every bad case with
its reason and leaves it out.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import nibabel as nib
import numpy as np

from petclick.core.atomic import atomic_write_text, is_temp_name
from petclick.core.errors import InputError
from petclick.io.clickfile import read_clicks
from petclick.io.images import AFFINE_ATOL_MM, check_binary, check_same_grid, ct_value_count, load_volume, pet_value_counts
from petclick.io.jsonfile import read_json, require_plain

log = logging.getLogger(__name__)
MAX_DATALIST_BYTES = 256 << 20
CHANNELS = {"_0000": "CT", "_0001": "PET"}

CASE_ID = re.compile(r"^(?P<tracer>fdg|psma)_(?P<patient>[^_]+)_(?P<date>.+)$", re.IGNORECASE)
NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class CaseId:
    """An autoPET case id `<tracer>_<patient>_<date>`, split into its parts."""

    case: str
    tracer: str
    patient: str
    date: str


def parse_case_id(case: str, source: str | Path | None = None) -> CaseId:
    """Split `fdg_<patient>_<date>` / `psma_<patient>_<date>`; anything else raises InputError."""
    m = CASE_ID.match(case)
    if not m:
        raise InputError(source or case, f"case id {case!r} does not look like fdg_<patient>_<date> or psma_<patient>_<date>")
    return CaseId(case, m["tracer"].lower(), m["patient"], m["date"])


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in NIFTI_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _nifti_stem(path: Path) -> str | None:
    if is_temp_name(path.name) or path.name.startswith("."):
        return None
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def find_cases(dataroot: Path, images: str = "imagesTr") -> list[str]:
    """Case ids of every `<case>_0000` (CT) or `<case>_0001` (PET) NIfTI in `dataroot/images`, so
    a case missing either file is still found (and reported); a file present both as .nii and
    .nii.gz raises InputError."""
    folder = Path(dataroot) / images
    if not folder.is_dir():
        raise InputError(folder, "folder not found (expected the autoPET layout: imagesTr/, labelsTr/)")
    seen: dict[tuple[str, str], Path] = {}
    for p in sorted(folder.iterdir()):
        stem = _nifti_stem(p)
        if stem is None or stem[-5:] not in CHANNELS:
            continue
        key = (stem[:-5], stem[-5:])
        if key in seen:
            raise InputError(p, f"duplicate case id {key[0]!r} (also {seen[key].name})")
        seen[key] = p
    return list(dict.fromkeys(case for case, _ in seen))


def label_cases(dataroot: Path, labels: str = "labelsTr") -> list[str]:
    """Case ids of the `<case>.nii[.gz]` files in `dataroot/labels` (none when the folder is absent)."""
    folder = Path(dataroot) / labels
    if not folder.is_dir():
        return []
    return list(dict.fromkeys(s for p in sorted(folder.iterdir()) if (s := _nifti_stem(p)) is not None))


def _header_grid(path: Path):
    try:
        img = nib.load(str(path))
        return tuple(img.shape[:3]), np.asarray(img.affine)
    except Exception as exc:
        raise InputError(path, f"cannot read as NIfTI ({exc})") from exc


def case_entry(dataroot: Path, case: str, images: str = "imagesTr", labels: str | None = "labelsTr",
               clicks_dir: Path | None = None, check_geometry: bool = True) -> dict:
    """The datalist entry of one case with paths relative to dataroot; missing or mismatched files raise InputError."""
    cid = parse_case_id(case, dataroot / images / f"{case}_0000.nii.gz")
    ct = _find(dataroot / images, f"{case}_0000")
    pet = _find(dataroot / images, f"{case}_0001")
    if ct is None:
        raise InputError(dataroot / images / f"{case}_0000.nii.gz", f"missing CT file for case {case}")
    if pet is None:
        raise InputError(dataroot / images / f"{case}_0001.nii.gz", f"missing PET file for case {case}")
    entry = {"image": str(ct.relative_to(dataroot)), "pet": str(pet.relative_to(dataroot))}
    label = None
    if labels is not None:
        label = _find(dataroot / labels, case)
        if label is None:
            raise InputError(dataroot / labels / f"{case}.nii.gz", f"missing label file for case {case}")
        entry["label"] = str(label.relative_to(dataroot))
    organs = _find(dataroot / "labelsTr_organs", case) if labels == "labelsTr" else None
    if organs is not None:
        entry["organs"] = str(organs.relative_to(dataroot))
    if clicks_dir is not None:
        cf = clicks_dir / f"{case}_clicks.json"
        if not cf.is_file():
            raise InputError(cf, f"missing click file for case {case}")
        entry["clicks"] = str(Path(_relative_or_absolute(cf, dataroot)))
    if check_geometry:
        shape, affine = _header_grid(pet)
        for other, what in ((ct, "CT"), (label, "label"), (organs, "organ map")):
            if other is None:
                continue
            oshape, oaffine = _header_grid(other)
            if oshape != shape:
                raise InputError(other, f"{what} shape {oshape} differs from PET shape {shape} ({pet.name})")
            if not np.allclose(oaffine, affine, atol=AFFINE_ATOL_MM):
                raise InputError(other, f"{what} affine differs from the PET affine ({pet.name})")
    entry["tracer"] = cid.tracer
    entry["case"] = case
    return entry


def _relative_or_absolute(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def assign_folds(case_ids: Sequence[str], num_folds: int = 5, seed: int = 0) -> dict[str, int]:
    """Fold per case: every case of one patient lands in one fold; patients of each tracer are spread evenly."""
    if num_folds < 1:
        raise ValueError("num_folds must be >= 1")
    patients: dict[tuple[str, str], list[str]] = defaultdict(list)
    for case in case_ids:
        cid = parse_case_id(case)
        patients[(cid.tracer, cid.patient)].append(case)
    rng = random.Random(seed)
    keys = sorted(patients)
    rng.shuffle(keys)
    # Largest patients first, each to the fold with fewest cases so far (ties: lowest fold), per tracer.
    keys.sort(key=lambda k: (k[0], -len(patients[k])))
    fold_size = [0] * num_folds
    tracer_size: dict[str, list[int]] = defaultdict(lambda: [0] * num_folds)
    folds: dict[str, int] = {}
    for key in keys:
        ts = tracer_size[key[0]]
        fold = min(range(num_folds), key=lambda f: (ts[f], fold_size[f]))
        for case in patients[key]:
            folds[case] = fold
        ts[fold] += len(patients[key])
        fold_size[fold] += len(patients[key])
    return folds


def select_test_cases(case_ids: Sequence[str], fraction: float, seed: int = 0) -> list[str]:
    """About `fraction` of the cases held out for testing, by whole patients and per tracer (each
    tracer gives about `fraction` of its cases, at least one patient when it has two or more): no
    patient is in both the test split and training. Sorted case ids."""
    if not 0.0 <= float(fraction) < 1.0:
        raise InputError(None, f"--test-fraction must be in [0, 1), got {fraction}")
    if float(fraction) == 0.0:
        return []
    patients: dict[tuple[str, str], list[str]] = defaultdict(list)
    for case in case_ids:
        cid = parse_case_id(case)
        patients[(cid.tracer, cid.patient)].append(case)
    rng = random.Random(seed)
    chosen: list[str] = []
    for tracer in sorted({k[0] for k in patients}):
        keys = sorted(k for k in patients if k[0] == tracer)
        rng.shuffle(keys)
        total = sum(len(patients[k]) for k in keys)
        target = max(1, round(float(fraction) * total)) if len(keys) > 1 else 0
        taken = 0
        for key in keys:
            if taken >= target:
                break
            chosen += patients[key]
            taken += len(patients[key])
    return sorted(chosen)


def validate_entry(dataroot: str | Path, entry: dict) -> None:
    """Read every file of a datalist entry (see the module docstring); InputError names the first bad file."""
    e = resolve_entry(entry, dataroot)
    pet = load_volume(e["pet"])
    n_nan_pet, n_neg = pet_value_counts(pet)
    ct = load_volume(e["image"])
    check_same_grid(pet, ct, "CT")
    n_nan_ct = ct_value_count(ct)
    if n_nan_pet or n_neg:
        log.warning("%s: %d NaN/infinite and %d negative SUV voxel(s) set to 0 when read (by every command and "
                    "by training)", pet.path, n_nan_pet, n_neg)
    if n_nan_ct:
        log.warning("%s: %d NaN/infinite CT voxel(s) set to -1000 HU (air) when read (by every command and by "
                    "training)", ct.path, n_nan_ct)
    del ct
    for key, what in (("label", "label"), ("organs", "organ map")):
        if key in e:
            vol = load_volume(e[key])
            check_same_grid(pet, vol, what)
            if key == "label":
                check_binary(vol)
    if "clicks" in e:
        read_clicks(e["clicks"], pet.array.shape)


def _entry_or_skip(make, case: str, split: str, check_data: bool, dataroot: Path, skipped: list | None) -> dict | None:
    try:
        entry = make()
        if check_data:
            validate_entry(dataroot, entry)
        return entry
    except InputError as exc:
        if skipped is None:
            raise
        skipped.append({"case": case, "split": split, "file": exc.source, "reason": exc.problem})
        log.warning("skipped %s: %s", case, exc)
        return None


def build_datalist(dataroot: str | Path, clicks_dir: str | Path | None = None, num_folds: int = 5, seed: int = 0,
                   test_cases: Iterable[str] = (), check_geometry: bool = True, check_data: bool = True,
                   skipped: list | None = None) -> dict:
    """Datalist of an autoPET-layout folder: `training` with folds, `testing` from `test_cases` and imagesTs/.

    check_data: read every file through (validate_entry); else only headers are compared
    (check_geometry). skipped: collect bad cases here ({case, split, file, reason}) instead of raising.
    """
    dataroot = Path(dataroot)
    if clicks_dir is None and (dataroot / "clicks").is_dir():
        clicks_dir = dataroot / "clicks"
    if clicks_dir is None:
        log.warning("WARNING: %s has no clicks/ folder and no click folder was given: the datalist lists no click "
                    "files, so training's click validation refuses it and click-step scores would be 0-click scores. "
                    "Write them first: petclick simulate-clicks --dataroot %s", dataroot, dataroot)
    clicks_dir = None if clicks_dir is None else Path(clicks_dir)
    cases = list(dict.fromkeys(find_cases(dataroot) + label_cases(dataroot)))
    if not cases:
        raise InputError(dataroot / "imagesTr", "no <case>_0000.nii.gz files found")
    test_set = set(test_cases)
    missing = test_set - set(cases)
    if missing:
        raise InputError(dataroot, f"test cases not found: {sorted(missing)}")
    kw = {"clicks_dir": clicks_dir, "check_geometry": check_geometry and not check_data}
    training = []
    for case in (c for c in cases if c not in test_set):
        entry = _entry_or_skip(lambda: case_entry(dataroot, case, **kw), case, "training", check_data, dataroot, skipped)
        if entry is not None:
            training.append(entry)
    folds = assign_folds([e["case"] for e in training], num_folds, seed)
    for entry in training:
        entry["fold"] = folds[entry["case"]]
    tests = [(c, "imagesTr", "labelsTr") for c in cases if c in test_set]
    if (dataroot / "imagesTs").is_dir():
        labels = "labelsTs" if (dataroot / "labelsTs").is_dir() else None
        tests += [(c, "imagesTs", labels) for c in find_cases(dataroot, "imagesTs")]
    testing = []
    for case, images, labels in tests:
        entry = _entry_or_skip(lambda: case_entry(dataroot, case, images=images, labels=labels, **kw), case,
                               "testing", check_data, dataroot, skipped)
        if entry is not None:
            testing.append(entry)
    if not training and not testing:
        raise InputError(dataroot, f"every case is bad ({len(skipped or [])} skipped): nothing to list")
    return {"name": dataroot.name, "num_folds": num_folds, "training": training, "testing": testing}


def write_datalist(datalist: dict, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(datalist, indent=1) + "\n")


def load_datalist(path: str | Path) -> dict:
    """Read a datalist JSON and check its schema: required keys per entry and unique case ids."""
    path = Path(path)
    data, notes = read_json(path, MAX_DATALIST_BYTES, "datalist")
    for note in notes:
        log.warning("%s: %s", path, note)
    require_plain(data, path)
    if data is ... or not isinstance(data, dict) or not isinstance(data.get("training", []), list):
        raise InputError(path, "datalist must be an object with a 'training' list")
    seen: set[str] = set()
    for split in ("training", "testing"):
        if not isinstance(data.get(split, []), list):
            raise InputError(path, f"'{split}' must be a list of entries")
        for n, entry in enumerate(data.get(split, [])):
            if not isinstance(entry, dict):
                raise InputError(path, f"{split}[{n}] must be an object with 'image' and 'pet' paths")
            for key in ("image", "pet"):
                if key not in entry:
                    raise InputError(path, f"{split}[{n}] lacks the '{key}' key")
            for key in ("image", "pet", "label", "clicks", "organs"):
                if key in entry and not (isinstance(entry[key], str) and entry[key]):
                    raise InputError(path, f"{split}[{n}].{key} must be a file path, got {entry[key]!r}")
            case = entry_case_id(entry)
            if case in seen:
                raise InputError(path, f"duplicate case id {case!r} in {split}[{n}]")
            seen.add(case)
    return data


def entry_case_id(entry: dict) -> str:
    """Case id of a datalist entry: its `case` key, else the CT file name without `_0000.nii.gz`."""
    if "case" in entry:
        return str(entry["case"])
    name = Path(entry["image"]).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith("_0000" + suffix):
            return name[: -len("_0000" + suffix)]
    return name.split(".")[0]


def resolve_entry(entry: dict, dataroot: str | Path) -> dict:
    """A copy of the entry with every relative path joined onto dataroot."""
    out = dict(entry)
    for key in ("image", "pet", "label", "clicks", "organs"):
        if key in out and isinstance(out[key], str) and not Path(out[key]).is_absolute():
            out[key] = str(Path(dataroot) / out[key])
    return out


def split_fold(entries: Sequence[dict], fold: int, source: str | Path) -> tuple[list[dict], list[dict]]:
    """(training, validation) entries of cross-validation fold `fold`: validation is the fold's
    entries, training every other fold's. The one fold rule of petclick (fill_template_config counts
    a fold's training cases with it, the training loop trains on them): an entry without a `fold`
    is an InputError naming `source` and the entry, never silently counted on either side."""
    train, val = [], []
    for n, entry in enumerate(entries):
        if "fold" not in entry:
            raise InputError(source, f"training[{n}] ({entry_case_id(entry)}) lacks a 'fold'")
        (val if int(entry["fold"]) == int(fold) else train).append(entry)
    return train, val
