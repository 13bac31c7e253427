"""A PET/CT study from DICOM as one petclick case: the CT and PET series paired, the PET in SUV, the
CT resampled onto the PET grid.

Source: a folder of DICOM files (any layout, one or several studies) or a DICOMweb server URL
(petclick.io.dicomweb), plus the study's StudyInstanceUID where the source holds several.

- Pairing: the study's PET series (Modality PT) and its CT (Modality CT), preferring the CT that
  shares the PET's FrameOfReferenceUID; several candidates of one kind: the one with most slices
  (logged). A study without PET, or without CT, is refused naming the study and what it holds.
- SUV: body-weight SUV from the PET's tags (petclick.io.dicom_suv; a missing tag is refused by name).
- CT: in DICOM it lies on its own, usually finer grid (512x512 at ~1 mm against the PET's ~4 mm);
  it is resampled onto the PET grid (trilinear, air outside) as autoPET's conversion makes its
  CTres. CT and PET that do not overlap in space are refused; a partial overlap is warned about.
The PET datasets (headers, pixels dropped) stay with the case: a DICOM SEG references them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from petclick.core.errors import InputError
from petclick.io.casefiles import resample_to, same_grid
from petclick.io.datalist import CASE_ID
from petclick.io.dicom_series import SeriesRef, scan_folder, series_volume
from petclick.io.dicom_suv import suv_factor
from petclick.io.dicomweb import DicomWeb, is_dicomweb
from petclick.io.images import CaseVolumes, Volume, checked_ct, checked_pet

log = logging.getLogger(__name__)
OVERLAP_WARN = 0.5          # warn when less than this fraction of the PET's field of view has CT
OVERLAP_SAMPLES = 12        # sample points per axis of the PET grid for the overlap


@dataclass
class DicomCase:
    """A study read as a case: CT and PET on the PET grid, plus the series it came from."""

    case: CaseVolumes
    study_uid: str
    ct_series: SeriesRef
    pet_series: SeriesRef
    pet_datasets: list[Dataset] = field(repr=False, default_factory=list)
    suv_factor: float = 1.0
    ct_native_shape: tuple[int, int, int] = (0, 0, 0)

    @property
    def case_id(self) -> str:
        return case_id_of(self.pet_series.header)

    @property
    def tracer(self) -> str | None:
        """fdg or psma from the radiopharmaceutical's name, else None (classified from the PET later)."""
        items = self.pet_series.header.get("RadiopharmaceuticalInformationSequence") or []
        agent = str(items[0].get("Radiopharmaceutical", "")).lower() if len(items) else ""
        return "psma" if "psma" in agent else "fdg" if ("fdg" in agent or "fluorodeoxyglucose" in agent) else None


def case_id_of(header: Dataset) -> str:
    """A study's case id: the autoPET case id held as the patient's family name (petclick's export),
    else `<PatientID>_<StudyDate>`."""
    name = str(getattr(header.get("PatientName"), "family_name", "") or "")
    if CASE_ID.match(name):
        return name
    patient = str(header.get("PatientID", "") or "patient")
    day = str(header.get("StudyDate", "") or "")
    return "_".join(x for x in (patient, day) if x)


def study_ids(source: str | Path) -> list[tuple[str, str]]:
    """(StudyInstanceUID, case id) of every study of a source that has a PET series."""
    seen = {}
    for s in series_of(source):
        if s.modality == "PT":
            seen.setdefault(s.study_uid, case_id_of(s.header))
    return sorted(seen.items(), key=lambda kv: kv[1])


def series_of(source: str | Path) -> list[SeriesRef]:
    """Every CT/PET series a source holds (a folder's files; a DICOMweb server's studies)."""
    if is_dicomweb(source):
        web = DicomWeb(str(source))
        return [s for uid in web.study_uids() for s in web.series(uid)]
    return scan_folder(source)


def study_series(source: str | Path, study_uid: str | None = None) -> tuple[str, list[SeriesRef]]:
    """(study uid, its CT/PET series); the study must be named where the source holds several."""
    if is_dicomweb(source):
        web = DicomWeb(str(source))
        if study_uid is None:
            uids = web.study_uids()
            if len(uids) != 1:
                raise InputError(source, f"holds {len(uids)} studies; name one by its StudyInstanceUID")
            study_uid = uids[0]
        series = web.series(study_uid)
        if not series:
            raise InputError(source, f"study {study_uid}: no CT or PET image series on the server")
        return study_uid, series
    series = scan_folder(source)
    studies = sorted({s.study_uid for s in series})
    if not studies:
        raise InputError(source, "no CT or PET DICOM image found")
    if study_uid is None:
        if len(studies) != 1:
            raise InputError(source, f"holds {len(studies)} studies ({', '.join(studies[:3])}...); name one by its "
                                     "StudyInstanceUID")
        study_uid = studies[0]
    chosen = [s for s in series if s.study_uid == study_uid]
    if not chosen:
        raise InputError(source, f"has no study {study_uid} (studies: {', '.join(studies)})")
    return study_uid, chosen


def pair_series(series: list[SeriesRef], source: str, study_uid: str) -> tuple[SeriesRef, SeriesRef]:
    """(CT, PET) of one study (module docstring)."""
    held = ", ".join(s.label() for s in series) or "no image series"
    pets = [s for s in series if s.modality == "PT"]
    if not pets:
        raise InputError(source, f"study {study_uid} has no PET series (it holds {held})")
    cts = [s for s in series if s.modality == "CT"]
    if not cts:
        raise InputError(source, f"study {study_uid} has no CT series (it holds {held})")
    pet = max(pets, key=lambda s: s.count)
    frame = pet.header.get("FrameOfReferenceUID")
    same_frame = [s for s in cts if s.header.get("FrameOfReferenceUID") == frame]
    ct = max(same_frame or cts, key=lambda s: s.count)
    if len(pets) > 1 or len(cts) > 1:
        log.info("study %s: %d PET and %d CT series; using %s and %s", study_uid, len(pets), len(cts),
                 pet.label(), ct.label())
    if not same_frame:
        log.warning("study %s: the CT and the PET have different FrameOfReferenceUIDs; pairing them by their "
                    "patient coordinates", study_uid)
    return ct, pet


def overlap_fraction(ct: Volume, pet: Volume, samples: int = OVERLAP_SAMPLES) -> float:
    """The fraction of the PET's field of view (a lattice of sample points) inside the CT's."""
    axes = [np.linspace(0, n - 1, min(n, samples)) for n in pet.array.shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    world = grid @ pet.affine[:3, :3].T + pet.affine[:3, 3]
    inv = np.linalg.inv(ct.affine)
    idx = world @ inv[:3, :3].T + inv[:3, 3]
    inside = np.all((idx >= -0.5) & (idx <= np.asarray(ct.array.shape) - 0.5), axis=1)
    return float(inside.mean())


def _strip_pixels(datasets: list[Dataset]) -> list[Dataset]:
    for ds in datasets:
        if "PixelData" in ds:
            del ds.PixelData
    return datasets


def load_dicom_case(source: str | Path, study_uid: str | None = None) -> DicomCase:
    """Read a PET/CT study as a case on the PET grid (module docstring)."""
    source = str(source)
    study_uid, series = study_series(source, study_uid)
    ct_ref, pet_ref = pair_series(series, source, study_uid)
    pet_ds = pet_ref.load()
    factor = suv_factor(pet_ds[0], f"{source} (PET series {pet_ref.series_uid})")
    bqml = series_volume(pet_ds, f"{source} (PET series {pet_ref.series_uid})")
    pet = checked_pet(Volume(np.asfortranarray(bqml.array * np.float32(factor)), bqml.affine, bqml.path))
    _strip_pixels(pet_ds)
    ct_native = series_volume(ct_ref.load(), f"{source} (CT series {ct_ref.series_uid})", along_normal=False)
    fraction = overlap_fraction(ct_native, pet)
    if fraction == 0:
        raise InputError(source, f"study {study_uid}: the CT ({ct_ref.series_uid}) and the PET ({pet_ref.series_uid}) "
                                 "do not overlap in space")
    if fraction < OVERLAP_WARN:
        log.warning("%s: study %s: only %.0f%% of the PET's field of view has CT (air elsewhere)", source, study_uid,
                    100 * fraction)
    native_shape = tuple(ct_native.array.shape)
    if not same_grid(ct_native, pet):
        ct_native = resample_to(ct_native, pet)
    ct = checked_ct(Volume(np.asfortranarray(ct_native.array), ct_native.affine, ct_native.path))
    return DicomCase(CaseVolumes(ct, pet), study_uid, ct_ref, pet_ref, pet_ds, factor, native_shape)
