"""Which cases to predict: one CT/PET pair, an autoPET-layout folder, or a datalist split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from petclick.core.errors import InputError
from petclick.io.datalist import CASE_ID, entry_case_id, find_cases, load_datalist, resolve_entry

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


@dataclass
class CaseSpec:
    """Files of one case to predict; tracer None when unknown (then classified from the PET)."""

    case_id: str
    ct: Path
    pet: Path
    clicks: Path | None = None
    tracer: str | None = None
    dicom: tuple[str, str] | None = None    # (folder or DICOMweb URL, StudyInstanceUID): ct and pet name the source


def image_stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def tracer_from_id(case_id: str) -> str | None:
    m = CASE_ID.match(case_id)
    return m["tracer"].lower() if m else None


def single_case(ct: str | Path, pet: str | Path, clicks: str | Path | None = None, case_id: str | None = None,
                tracer: str | None = None) -> CaseSpec:
    """A case from explicit files; the id defaults to the PET file name without `_0001` and suffix."""
    for path, what in ((ct, "CT"), (pet, "PET")):
        if not Path(path).is_file():
            raise InputError(path, f"{what} file not found")
    if clicks is not None and not Path(clicks).is_file():
        raise InputError(clicks, "click file not found")
    if case_id is None:
        case_id = image_stem(pet)
        if case_id.endswith("_0001"):
            case_id = case_id[: -len("_0001")]
    return CaseSpec(case_id, Path(ct), Path(pet), None if clicks is None else Path(clicks),
                    tracer or tracer_from_id(case_id))


def folder_cases(root: str | Path, images: str | None = None) -> list[CaseSpec]:
    """Every case of an autoPET-layout folder (imagesTs/ when present, else imagesTr/), clicks from clicks/."""
    root = Path(root)
    if images is None:
        images = "imagesTs" if (root / "imagesTs").is_dir() else "imagesTr"
    cases = []
    for case in find_cases(root, images):
        ct, pet = (next((root / images / f"{case}{ch}{s}" for s in (".nii.gz", ".nii")
                         if (root / images / f"{case}{ch}{s}").is_file()), None) for ch in ("_0000", "_0001"))
        for path, ch, what in ((ct, "_0000", "CT"), (pet, "_0001", "PET")):
            if path is None:
                raise InputError(root / images / f"{case}{ch}.nii.gz", f"missing {what} file for case {case}")
        clicks = root / "clicks" / f"{case}_clicks.json"
        cases.append(CaseSpec(case, ct, pet, clicks if clicks.is_file() else None, tracer_from_id(case)))
    if not cases:
        raise InputError(root / images, "no <case>_0000.nii.gz files found")
    return cases


def dicom_cases(source: str | Path, study: str | None = None, clicks: str | Path | None = None,
                tracer: str | None = None) -> list[CaseSpec]:
    """The PET/CT studies of a DICOM folder or DICOMweb server (or the one named), one case each;
    case ids from petclick.io.dicom_study.case_id_of. A click file goes with a single study only."""
    from petclick.io.dicom_study import study_ids

    found = study_ids(str(source))
    if study is not None:
        found = [(uid, cid) for uid, cid in found if uid == study]
        if not found:
            raise InputError(source, f"has no PET/CT study {study}")
    if not found:
        raise InputError(source, "holds no study with a PET series")
    if clicks is not None and len(found) != 1:
        raise InputError(clicks, f"a click file goes with one study; {source} holds {len(found)} (name one with --study)")
    if clicks is not None and not Path(clicks).is_file():
        raise InputError(clicks, "click file not found")
    return [CaseSpec(cid, Path(str(source)), Path(str(source)), None if clicks is None else Path(clicks),
                     tracer or tracer_from_id(cid), dicom=(str(source), uid)) for uid, cid in found]


def datalist_cases(path: str | Path, split: str = "testing", dataroot: str | Path | None = None,
                   fold: int | None = None) -> list[CaseSpec]:
    """The cases of one datalist split (optionally one fold of `training`), paths joined onto dataroot."""
    path = Path(path)
    data = load_datalist(path)
    if split not in data:
        raise InputError(path, f"datalist has no {split!r} split (has {sorted(k for k in data if isinstance(data[k], list))})")
    root = Path(dataroot) if dataroot is not None else path.parent
    cases = []
    for entry in data[split]:
        if fold is not None and entry.get("fold") != fold:
            continue
        e = resolve_entry(entry, root)
        case = entry_case_id(entry)
        cases.append(CaseSpec(case, Path(e["image"]), Path(e["pet"]), Path(e["clicks"]) if "clicks" in e else None,
                              e.get("tracer") or tracer_from_id(case)))
    if not cases:
        raise InputError(path, f"no cases in split {split!r}" + ("" if fold is None else f" fold {fold}"))
    return cases
