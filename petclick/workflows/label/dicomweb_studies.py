"""`petclick label --studies http://.../dicom-web`: the PET/CT studies of a DICOMweb server (a PACS,
Orthanc) served as the label app's datastore, and each result stored back as a DICOM SEG.

- `prepare(url, cache)` (at start, before the server listens): every study of the server is read
  with petclick.io.dicom_study (CT and PET paired, PET in SUV, CT resampled onto the PET grid) and
  cached in the autoPET layout `cache/imagesTr/<id>_0000.nii.gz` (CT) and `_0001.nii.gz` (PET) with
  id = the PET's SeriesInstanceUID: the series a DICOM viewer (OHIF) shows, whose voxel indices the
  clicks are and whose grid the masks lie on. A study already cached is not fetched again. A study
  that cannot be read (no PET, no CT, CT and PET apart, a PET without the SUV tags) is refused with
  its one-line reason, logged and kept in `cache/dicomweb.json`; a request for it is a 409 with
  that reason. A server that is down is an InputError before anything starts.
- `SegStore(url, cache)`: after each result, the mask as a DICOM SEG on the PET series
  (petclick.io.dicom_seg), stored with STOW-RS into the study: one SEG series per reader, image and
  server run (its description names the reader), one instance per result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.io.dicom_seg import seg_dataset
from petclick.io.dicom_study import load_dicom_case, pair_series
from petclick.io.dicomweb import DicomWeb
from petclick.io.images import load_volume, save_volume
from petclick.workflows.label.limits import ANONYMOUS
from petclick.workflows.label.requests import LabelRequestError
from petclick.workflows.label.studies import CT_SUFFIX, IMAGES_SUBFOLDER, PET_SUFFIX

log = logging.getLogger(__name__)
INDEX = "dicomweb.json"
SERIES_DESCRIPTION_CHARS = 64         # DICOM LO


def cache_for(url: str) -> Path:
    """The default cache of a DICOMweb server: one folder per URL under ~/.cache/petclick/label/."""
    digest = hashlib.sha1(url.rstrip("/").encode()).hexdigest()[:10]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "petclick" / "label" / f"dicomweb-{digest}"


@dataclass
class DicomWebStudies:
    """What `prepare` found: images folder, served studies by id, refused studies by id (reason)."""

    url: str
    cache: Path
    studies: dict[str, dict] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def images(self) -> Path:
        return self.cache / IMAGES_SUBFOLDER

    def save(self) -> Path:
        return atomic_write_text(self.cache / INDEX, json.dumps({"url": self.url, "studies": self.studies,
                                                                 "refused": self.refused}, indent=1) + "\n")

    @classmethod
    def load(cls, cache: str | Path) -> "DicomWebStudies":
        cache = Path(cache)
        path = cache / INDEX
        if not path.is_file():
            raise InputError(path, "no DICOMweb study index here (petclick label prepares it at start)")
        data = json.loads(path.read_text())
        return cls(data["url"], cache, data.get("studies", {}), data.get("refused", {}))


def _cached(images: Path, image_id: str) -> bool:
    return all((images / f"{image_id}{suffix}").is_file() for suffix in (CT_SUFFIX, PET_SUFFIX))


def prepare(url: str, cache: str | Path) -> DicomWebStudies:
    """Read (or find cached) every study of the server (module docstring)."""
    web = DicomWeb(url)
    found = DicomWebStudies(web.url, Path(cache))
    old = DicomWebStudies.load(cache).studies if (Path(cache) / INDEX).is_file() else {}
    found.images.mkdir(parents=True, exist_ok=True)
    uids = web.study_uids()
    if not uids:
        raise InputError(url, "the DICOMweb server holds no study")
    for study_uid in uids:
        series = web.series(study_uid)
        try:
            ct_ref, pet_ref = pair_series(series, web.url, study_uid)
        except InputError as exc:
            found.refused[study_uid] = exc.problem
            log.warning("%s", exc)
            continue
        image_id = pet_ref.series_uid
        entry = {"study": study_uid, "pet_series": pet_ref.series_uid, "ct_series": ct_ref.series_uid,
                 "case_id": old.get(image_id, {}).get("case_id", image_id)}
        if not _cached(found.images, image_id) or image_id not in old:
            try:
                case = load_dicom_case(web.url, study_uid)
            except InputError as exc:
                found.refused[image_id] = exc.problem
                log.warning("%s", exc)
                continue
            save_volume(found.images / f"{image_id}{CT_SUFFIX}", np.round(case.case.ct.array).astype(np.int16),
                        case.case.affine)
            save_volume(found.images / f"{image_id}{PET_SUFFIX}", case.case.pet.array, case.case.affine)
            entry["case_id"] = case.case_id
        found.studies[image_id] = entry
    found.save()
    log.info("%s: %d PET/CT stud(ies) served, %d refused (cache %s)", url, len(found.studies), len(found.refused),
             found.cache)
    return found


def refused_reason(studies: DicomWebStudies | None, image_id: str) -> None:
    """A 409 naming why `image_id` (a refused study's PET series or study UID) is not served."""
    if studies is not None and image_id in studies.refused:
        raise LabelRequestError(409, f"{image_id}: {studies.refused[image_id]}")


class SegStore:
    """Stores each result as a DICOM SEG into its study on the server (module docstring)."""

    def __init__(self, studies: DicomWebStudies):
        self.studies = studies
        self.web = DicomWeb(studies.url)
        self.series: dict[tuple[str, str], tuple[str, int]] = {}   # (reader, image id) -> (SEG series, last number)
        self.headers: dict[str, list] = {}
        self._lock = threading.Lock()

    def store(self, image_id: str, mask_path: str | Path, reader: str = ANONYMOUS) -> dict:
        """The mask file (on the PET grid) as a SEG instance in the image's study, in the SEG series of
        (`reader`, image); returns its UIDs."""
        entry = self.studies.studies.get(image_id)
        if entry is None:
            raise LabelRequestError(404, f"unknown image id {image_id!r}")
        mask = load_volume(mask_path).array.astype(np.uint8)
        with self._lock:
            if image_id not in self.headers:
                self.headers[image_id] = self.web.headers(entry["study"], entry["pet_series"])
            series_uid, number = self.series.get((reader, image_id), (None, 0))
            seg = seg_dataset(mask, self.headers[image_id], source=image_id, series_uid=series_uid,
                              instance_number=number + 1,
                              description=f"petclick lesions, reader {reader}"[:SERIES_DESCRIPTION_CHARS])
            self.series[(reader, image_id)] = (str(seg.SeriesInstanceUID), number + 1)
        self.web.store([seg])
        return {"study": entry["study"], "series": str(seg.SeriesInstanceUID), "instance": str(seg.SOPInstanceUID),
                "instance_number": number + 1, "frames": int(seg.NumberOfFrames)}
