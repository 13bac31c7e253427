"""DICOM series: finding them (a folder of files, any layout) and turning one into a petclick Volume.

- `scan_folder(folder)` reads every file's header only (pydicom, `stop_before_pixels`) and groups the
  image instances by study and series; files that are not DICOM are skipped (counted in the log),
  instances without pixel geometry (reports, SEG, RT) are kept out of the image series.
- `series_volume(datasets)` stacks a series with highdicom (`get_volume_from_series`: slice
  sorting, equal spacing and one orientation checked, the modality rescale applied per slice) and
  returns petclick's (i, j, k) = (column, row, slice) array with its RAS affine, the slice axis
  running along the image plane's normal (as ITK and dcm2niix order it).
Why highdicom: it checks the geometry of a series (uneven gaps, mixed orientations, missing
slices) that a hand-written stack would silently get wrong, and works on pydicom datasets from a
folder or from DICOMweb alike.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from petclick.core.errors import InputError
from petclick.io.images import Volume

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
IMAGE_MODALITIES = ("CT", "PT")


@dataclass
class SeriesRef:
    """One image series of a study: its identity, a header (first instance, no pixels) and a loader
    of its full datasets (from files or a DICOMweb server)."""

    study_uid: str
    series_uid: str
    modality: str
    header: Dataset
    count: int
    source: str
    load: Callable[[], list[Dataset]] = field(repr=False, default=lambda: [])

    @property
    def description(self) -> str:
        return str(self.header.get("SeriesDescription", "") or "")

    def label(self) -> str:
        return f"{self.modality} series {self.series_uid} ({self.count} instance(s))"


def _read_files(paths: Sequence[Path]) -> list[Dataset]:
    return [pydicom.dcmread(p) for p in paths]


def scan_folder(folder: str | Path) -> list[SeriesRef]:
    """Every CT and PET image series under `folder` (recursively), grouped by study and series."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "DICOM folder not found")
    groups: dict[tuple[str, str], list[tuple[Path, Dataset]]] = defaultdict(list)
    skipped = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            skipped += 1
            continue
        if ds.get("Modality") not in IMAGE_MODALITIES or "ImagePositionPatient" not in ds:
            continue
        groups[(str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")))].append((path, ds))
    if skipped:
        log.info("%s: %d file(s) that are not DICOM skipped", folder, skipped)
    series = []
    for (study, uid), items in sorted(groups.items()):
        paths = [p for p, _ in items]
        series.append(SeriesRef(study, uid, str(items[0][1].Modality), items[0][1], len(items), str(folder),
                                load=lambda paths=paths: _read_files(paths)))
    return series


def series_volume(datasets: Sequence[Dataset], source: str, dtype=np.float32, along_normal: bool = True) -> Volume:
    """A single-frame CT or PET series as a Volume (module docstring); InputError naming the series
    when its slices do not form one regular volume. `along_normal` False keeps highdicom's slice
    order (no copy; for a volume that is resampled anyway)."""
    import highdicom as hd

    if not datasets:
        raise InputError(source, "series holds no instance")
    uid = datasets[0].get("SeriesInstanceUID", "?")
    if len(datasets) < 2:
        raise InputError(source, f"series {uid} has {len(datasets)} slice: a volume needs at least 2")
    try:
        vol = hd.get_volume_from_series(list(datasets), dtype=dtype, apply_real_world_transform=False,
                                        apply_modality_transform=True, apply_voi_transform=False)
    except (ValueError, AttributeError, KeyError, RuntimeError) as exc:
        raise InputError(source, f"series {uid} is not one regular volume ({exc})") from exc
    array = np.asarray(vol.array)
    if array.ndim != 3:
        raise InputError(source, f"series {uid}: expected a 3D volume, got shape {array.shape}")
    lps = np.asarray(vol.affine, float)           # indices (slice, row, column) -> LPS mm
    lin = lps[:3, :3][:, [2, 1, 0]]                # (column, row, slice)
    origin = lps[:3, 3]
    array = array.transpose(2, 1, 0)
    normal = np.cross(lin[:, 0], lin[:, 1])
    if along_normal and float(np.dot(normal, lin[:, 2])) < 0:       # slices along the plane's normal
        origin = origin + lin[:, 2] * (array.shape[2] - 1)
        lin[:, 2] = -lin[:, 2]
        array = array[:, :, ::-1]
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = lin, origin
    # a view, no copy (i fastest in memory, as nibabel's arrays); the slice flip above has a negative stride
    return Volume(array.astype(dtype, copy=False), LPS_TO_RAS @ affine, Path(source))
