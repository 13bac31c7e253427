"""A lesion mask as a DICOM Segmentation (SEG) on the PET's geometry, and back.

Written with highdicom (the reference implementation of the DICOM SEG information object in
Python, kept up with pydicom 3 and numpy 2; pydicom-seg 0.4.1, the other candidate, pins numpy<2
and imports a module pydicom 3 removed). One binary segment "Lesion" (Morphologically abnormal
structure / Neoplasm), algorithm "petclick" (SEMIAUTOMATIC: click-guided), one frame per PET
slice that holds lesion voxels, each frame referencing its PET instance, so viewers show it over
the PET series and a reader gets it back on the PET grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import petclick
from petclick.core.atomic import atomic_path
from petclick.core.errors import InputError

SEGMENT_LABEL = "Lesion"
SERIES_NUMBER = 300


def slice_order(datasets: Sequence[Dataset]) -> list[int]:
    """Indices of single-frame datasets sorted along their plane normal: slice k of petclick's volume
    (petclick.io.dicom_series orders slices the same way)."""
    orientation = np.asarray(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = [float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))) for ds in datasets]
    return list(np.argsort(positions, kind="stable"))


def _sorted(datasets: Sequence[Dataset], shape: tuple[int, int, int], source: str) -> list[Dataset]:
    ordered = [datasets[i] for i in slice_order(datasets)]
    rows, cols = int(ordered[0].Rows), int(ordered[0].Columns)
    if (cols, rows, len(ordered)) != tuple(shape):
        raise InputError(source, f"mask shape {tuple(shape)} is not the PET series' (columns, rows, slices) "
                                 f"{(cols, rows, len(ordered))}")
    return ordered


def seg_dataset(mask: np.ndarray, pet_datasets: Sequence[Dataset], source: str = "mask",
                description: str = "petclick lesions", series_number: int = SERIES_NUMBER,
                series_uid: str | None = None, instance_number: int = 1) -> Dataset:
    """The DICOM SEG of a 0/1 mask given on the PET grid, (i, j, k) = (column, row, slice); a new
    series unless `series_uid` is given (a later result of the same reading session)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    mask = np.asarray(mask)
    ordered = _sorted(pet_datasets, mask.shape, source)
    frames = np.ascontiguousarray((mask > 0).astype(np.uint8).transpose(2, 1, 0))       # (slice, row, column)
    algorithm = hd.AlgorithmIdentificationSequence(name="petclick", version=petclick.__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC, algorithm_identification=algorithm)
    return hd.seg.Segmentation(
        source_images=ordered, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=series_uid or generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=int(instance_number),
        manufacturer="petclick", manufacturer_model_name="petclick", software_versions=petclick.__version__,
        device_serial_number="0", series_description=description, omit_empty_frames=True)


def write_seg(path: str | Path, mask: np.ndarray, pet_datasets: Sequence[Dataset], **kwargs) -> Path:
    """Write the SEG of `mask` (seg_dataset) atomically."""
    path = Path(path)
    ds = seg_dataset(mask, pet_datasets, source=str(path), **kwargs)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def read_seg(seg: str | Path | Dataset, pet_datasets: Sequence[Dataset]) -> np.ndarray:
    """The lesion mask (uint8, (i, j, k) on the PET grid) of a SEG that references the PET's instances;
    segments are merged (any segment = lesion)."""
    import highdicom as hd
    import pydicom

    source = str(seg) if not isinstance(seg, Dataset) else "SEG"
    try:
        ds = seg if isinstance(seg, Dataset) else pydicom.dcmread(seg)
        segmentation = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except Exception as exc:  # pydicom/highdicom raise many types for files that are not a SEG
        raise InputError(source, f"not a readable DICOM SEG ({type(exc).__name__}: {exc})") from exc
    rows, cols = int(pet_datasets[0].Rows), int(pet_datasets[0].Columns)
    ordered = [pet_datasets[i] for i in slice_order(pet_datasets)]
    uids = [str(d.SOPInstanceUID) for d in ordered]
    referenced = {str(r.ReferencedSOPInstanceUID) for f in segmentation.PerFrameFunctionalGroupsSequence
                  for r in f.DerivationImageSequence[0].SourceImageSequence}
    unknown = referenced - set(uids)
    if unknown:
        raise InputError(source, f"references {len(unknown)} instance(s) that are not in the PET series")
    frames = np.zeros((len(uids), rows, cols), np.uint8)
    hit = [n for n, uid in enumerate(uids) if uid in referenced]
    if hit:
        pixels = segmentation.get_pixels_by_source_instance(
            source_sop_instance_uids=[uids[n] for n in hit], combine_segments=True, skip_overlap_checks=True)
        frames[hit] = (np.asarray(pixels) > 0)
    return np.ascontiguousarray(frames.transpose(2, 1, 0))
