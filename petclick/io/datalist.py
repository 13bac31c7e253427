"""Datalists (MONAI decathlon style) for the autoPET III/IV layout, with folds grouped by patient.

    <root>/imagesTr/<case>_0000.nii.gz   CT      <root>/imagesTr/<case>_0001.nii.gz   PET
    <root>/labelsTr/<case>.nii.gz        lesions <root>/clicks/<case>_clicks.json     clicks
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import nibabel as nib
import numpy as np

from petclick.core.errors import InputError
from petclick.io.images import AFFINE_ATOL_MM

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


def find_cases(dataroot: Path, images: str = "imagesTr") -> list[str]:
    """Case ids of every `<case>_0000.nii[.gz]` (CT) in `dataroot/images`; duplicates raise InputError."""
    folder = dataroot / images
    if not folder.is_dir():
        raise InputError(folder, "folder not found (expected the autoPET layout: imagesTr/, labelsTr/)")
    seen: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        for suffix in NIFTI_SUFFIXES:
            if p.name.endswith("_0000" + suffix):
                case = p.name[: -len("_0000" + suffix)]
                if case in seen:
                    raise InputError(p, f"duplicate case id {case!r} (also {seen[case].name})")
                seen[case] = p
    return list(seen)


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
        raise InputError(dataroot / images / f"{case}_0000.nii.gz", "missing CT file for case")
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


def build_datalist(dataroot: str | Path, clicks_dir: str | Path | None = None, num_folds: int = 5, seed: int = 0,
                   test_cases: Iterable[str] = (), check_geometry: bool = True) -> dict:
    """Datalist of an autoPET-layout folder: `training` with folds, `testing` from `test_cases` and imagesTs/."""
    dataroot = Path(dataroot)
    if clicks_dir is None and (dataroot / "clicks").is_dir():
        clicks_dir = dataroot / "clicks"
    clicks_dir = None if clicks_dir is None else Path(clicks_dir)
    cases = find_cases(dataroot)
    if not cases:
        raise InputError(dataroot / "imagesTr", "no <case>_0000.nii.gz files found")
    test_set = set(test_cases)
    missing = test_set - set(cases)
    if missing:
        raise InputError(dataroot, f"test cases not found: {sorted(missing)}")
    train_ids = [c for c in cases if c not in test_set]
    folds = assign_folds(train_ids, num_folds, seed)
    training = []
    for case in train_ids:
        entry = case_entry(dataroot, case, clicks_dir=clicks_dir, check_geometry=check_geometry)
        entry["fold"] = folds[case]
        training.append(entry)
    testing = [case_entry(dataroot, c, clicks_dir=clicks_dir, check_geometry=check_geometry) for c in cases if c in test_set]
    if (dataroot / "imagesTs").is_dir():
        for case in find_cases(dataroot, "imagesTs"):
            labels = "labelsTs" if (dataroot / "labelsTs").is_dir() else None
            testing.append(case_entry(dataroot, case, images="imagesTs", labels=labels, clicks_dir=clicks_dir,
                                      check_geometry=check_geometry))
    return {"name": dataroot.name, "num_folds": num_folds, "training": training, "testing": testing}


def write_datalist(datalist: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(datalist, indent=1) + "\n")
    return path


def load_datalist(path: str | Path) -> dict:
    """Read a datalist JSON and check its schema: required keys per entry and unique case ids."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "datalist not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(path, f"malformed JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("training", []), list):
        raise InputError(path, "datalist must be an object with a 'training' list")
    seen: set[str] = set()
    for split in ("training", "testing"):
        for n, entry in enumerate(data.get(split, [])):
            for key in ("image", "pet"):
                if key not in entry:
                    raise InputError(path, f"{split}[{n}] lacks the '{key}' key")
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
