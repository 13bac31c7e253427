"""Writing a PET/CT study as DICOM: a CT series (HU through rescale slope and intercept) and a PET
series (Bq/mL, 16 bits with a rescale slope per slice, and the tags body-weight SUV needs).

Both series share the study, the patient and one frame of reference, as a scanner's export does;
each slice is one file `<series folder>/<NNNN>.dcm` (uncompressed, explicit VR little endian).
Geometry: petclick's (i, j, k) array with its RAS affine becomes DICOM's column (i), row (j) and
slice (k) with LPS Image Position/Orientation (Patient), so a reader recovers the same voxels at the
same world positions. UIDs derive from the study key (the same key gives the same files).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

from petclick.core.atomic import atomic_path
from petclick.io.dicom_suv import SuvParameters, dose_tags, suv_parameters
from petclick.io.images import Volume

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
CT_INTERCEPT = -1024.0
UINT16_MAX = 65535


@dataclass(frozen=True)
class StudyInfo:
    """Patient and study attributes of an exported study."""

    key: str                       # makes the UIDs (case id)
    patient_id: str
    patient_name: str
    study_datetime: datetime
    sex: str = "O"
    age_years: int | None = None
    description: str = "petclick PET/CT"

    def uid(self, *parts: str) -> str:
        return generate_uid(entropy_srcs=["petclick", self.key, *parts])


def plane_geometry(affine: np.ndarray) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """(ImageOrientationPatient, PixelSpacing [row, column], LPS position of voxel (0,0,0), LPS step per slice)."""
    lps = LPS_FROM_RAS @ np.asarray(affine, float)
    sx, sy = (float(np.linalg.norm(lps[:3, n])) for n in (0, 1))
    orientation = [*(lps[:3, 0] / sx).tolist(), *(lps[:3, 1] / sy).tolist()]
    return [round(v, 8) for v in orientation], [sy, sx], lps[:3, 3], lps[:3, 2]


def _ds(value: float) -> str:
    """A decimal string (DS: at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6g}"


def _base(info: StudyInfo, modality: str, sop_class: str, series_uid: str, frame_uid: str, number: int,
          description: str, acquired: datetime) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.PatientID, ds.PatientName, ds.PatientSex = info.patient_id, info.patient_name, info.sex
    if info.age_years is not None:
        ds.PatientAge = f"{int(info.age_years):03d}Y"
    ds.PatientBirthDate = ""
    ds.StudyInstanceUID, ds.StudyID = info.uid("study"), "1"
    ds.StudyDate, ds.StudyTime = f"{info.study_datetime:%Y%m%d}", f"{info.study_datetime:%H%M%S}"
    ds.StudyDescription, ds.AccessionNumber, ds.ReferringPhysicianName = info.description, "", ""
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, number, description
    ds.SeriesDate, ds.SeriesTime = f"{acquired:%Y%m%d}", f"{acquired:%H%M%S}"
    ds.AcquisitionDate, ds.AcquisitionTime = ds.SeriesDate, ds.SeriesTime
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
    ds.Manufacturer, ds.InstitutionName = "petclick", "petclick phantoms"
    ds.BodyPartExamined = "WHOLEBODY"
    ds.PatientPosition = "FFS"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def _write_series(folder: Path, template: Dataset, volume: Volume, slices: list[tuple[np.ndarray, float, float]],
                  info: StudyInfo, kind: str) -> list[Path]:
    """One file per slice k: pixels (rows = j, columns = i), its rescale, its position."""
    orientation, spacing, origin, step = plane_geometry(volume.affine)
    nx, ny, nz = volume.array.shape
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (pixels, slope, intercept) in enumerate(slices):
        ds = Dataset()
        ds.update(template)
        ds.SOPInstanceUID = info.uid(kind, str(k))
        ds.InstanceNumber = k + 1
        if kind == "pt":
            ds.ImageIndex = k + 1
        ds.ImageOrientationPatient = orientation
        ds.ImagePositionPatient = [_ds(v) for v in (origin + k * step)]
        ds.PixelSpacing = [_ds(v) for v in spacing]
        ds.SliceThickness = _ds(float(np.linalg.norm(step)))
        ds.Rows, ds.Columns = ny, nx
        ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
        ds.PixelData = np.ascontiguousarray(pixels.T).astype("<u2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        path = folder / f"{k + 1:04d}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    return paths


def write_ct_series(folder: str | Path, ct: Volume, info: StudyInfo, acquired: datetime) -> list[Path]:
    """The CT (HU) as uint16 with RescaleIntercept -1024 and slope 1 (HU below -1024 are clipped)."""
    template = _base(info, "CT", CTImageStorage, info.uid("ct"), info.uid("frame"), 1, "CT (HU)", acquired)
    template.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    template.KVP, template.ConvolutionKernel = "120", "B30f"
    template.WindowCenter, template.WindowWidth = "40", "400"
    stored = np.clip(np.rint(ct.array - CT_INTERCEPT), 0, UINT16_MAX).astype(np.uint16)
    slices = [(stored[:, :, k], 1.0, CT_INTERCEPT) for k in range(stored.shape[2])]
    return _write_series(Path(folder), template, ct, slices, info, "ct")


def pet_slices(bqml: np.ndarray) -> list[tuple[np.ndarray, float, float]]:
    """Per slice: uint16 pixels, the slope mapping them to Bq/mL (slice maximum / 65535), intercept 0;
    negative activities are stored as 0."""
    out = []
    for k in range(bqml.shape[2]):
        plane = np.maximum(bqml[:, :, k].astype(np.float64), 0.0)
        top = float(plane.max())
        slope = float(_ds(top / UINT16_MAX)) if top > 0 else 1.0
        out.append((np.clip(np.rint(plane / slope), 0, UINT16_MAX).astype(np.uint16), slope, 0.0))
    return out


def write_pet_series(folder: str | Path, pet_suv: Volume, info: StudyInfo, params: SuvParameters,
                     radionuclide: str = "18F", agent: str = "Fluorodeoxyglucose") -> tuple[list[Path], float]:
    """The PET given in SUV, written in Bq/mL with the SUV tags of `params`; returns the files and
    the SUV factor the written tags give (the DS strings round the parameters)."""
    template = _base(info, "PT", PositronEmissionTomographyImageStorage, info.uid("pt"), info.uid("frame"), 2,
                     "PET AC (Bq/mL)", params.reference)
    template.ImageType = ["ORIGINAL", "PRIMARY"]
    template.SeriesType = ["WHOLE BODY", "IMAGE"]
    template.CountsSource, template.RandomsCorrectionMethod = "EMISSION", "DLYD"
    template.AttenuationCorrectionMethod, template.ReconstructionMethod = "CT", "OSEM"
    template.NumberOfSlices = pet_suv.array.shape[2]
    dose_tags(template, params, radionuclide, agent)
    factor = suv_parameters(template, "export").factor
    slices = pet_slices(pet_suv.array / factor)
    return _write_series(Path(folder), template, pet_suv, slices, info, "pt"), factor
