"""Body-weight SUV of a DICOM PET series: the factor that turns Bq/mL into SUV, from the tags alone.

    SUV = activity concentration (Bq/mL) * patient weight (g) / injected dose decayed to the scan (Bq)

What is read (a missing or unusable tag is an InputError naming it; nothing is guessed):

| tag | keyword | use |
| --- | --- | --- |
| (0054,1001) | Units | must be BQML (pixel values in Bq/mL after rescale) |
| (0010,1030) | PatientWeight | kg, > 0 |
| (0054,0016) | RadiopharmaceuticalInformationSequence | its first item holds the three below |
| (0018,1074) | RadionuclideTotalDose | injected activity, Bq, > 0 |
| (0018,1075) | RadionuclideHalfLife | seconds, > 0 |
| (0018,1078) / (0018,1072) | RadiopharmaceuticalStartDateTime / ...StartTime | injection time (the time alone takes SeriesDate) |
| (0054,1102) | DecayCorrection | START: decay the dose to the series time; ADMIN: images already corrected to the injection (no decay); NONE is refused |
| (0008,0021) + (0008,0031) | SeriesDate + SeriesTime | the reference time of START decay correction |

This is the rule of autoPET's own DICOM-to-NIfTI conversion (TCIA FDG-PET-CT-Lesions) and of the
QIBA SUV vendor-neutral pseudo-code for the common case (decay-corrected to series start).
`dose_tags` writes the same tags (the phantom export), so one table documents both directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pydicom.dataset import Dataset

from petclick.core.errors import InputError

SUV_TAGS = {
    "Units": "(0054,1001)", "PatientWeight": "(0010,1030)", "RadiopharmaceuticalInformationSequence": "(0054,0016)",
    "RadionuclideTotalDose": "(0018,1074)", "RadionuclideHalfLife": "(0018,1075)",
    "RadiopharmaceuticalStartDateTime": "(0018,1078)", "RadiopharmaceuticalStartTime": "(0018,1072)",
    "DecayCorrection": "(0054,1102)", "SeriesDate": "(0008,0021)", "SeriesTime": "(0008,0031)",
}
DECAY_CORRECTIONS = ("START", "ADMIN")


def tag_name(keyword: str) -> str:
    """`Keyword (gggg,eeee)`: how an error names a tag."""
    return f"{keyword} {SUV_TAGS.get(keyword, '')}".strip()


@dataclass(frozen=True)
class SuvParameters:
    """What the SUV factor is computed from (all read from the tags)."""

    weight_kg: float
    dose_bq: float
    half_life_s: float
    injection: datetime
    reference: datetime
    decay_correction: str

    @property
    def decayed_dose_bq(self) -> float:
        """The injected dose decayed to the reference time (START), or as injected (ADMIN)."""
        if self.decay_correction == "ADMIN":
            return self.dose_bq
        elapsed = (self.reference - self.injection).total_seconds()
        return self.dose_bq * math.pow(2.0, -elapsed / self.half_life_s)

    @property
    def factor(self) -> float:
        """SUV per Bq/mL: weight in grams over the decayed dose."""
        return self.weight_kg * 1000.0 / self.decayed_dose_bq


def _value(ds: Dataset, keyword: str, source: str, where: str = ""):
    value = ds.get(keyword)
    if value is None or value == "":
        raise InputError(source, f"PET lacks {tag_name(keyword)}{where}: body-weight SUV needs it, petclick does not "
                                 "guess it")
    return value


def _positive(ds: Dataset, keyword: str, source: str, where: str = "") -> float:
    value = _value(ds, keyword, source, where)
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(source, f"PET {tag_name(keyword)}{where} is not a number: {value!r}") from exc
    if not (math.isfinite(number) and number > 0):
        raise InputError(source, f"PET {tag_name(keyword)}{where} must be > 0, got {value!r}")
    return number


def _time(text: str, keyword: str, source: str) -> timedelta:
    text = str(text).strip()
    try:
        hh, mm = int(text[0:2]), int(text[2:4]) if len(text) >= 4 else 0
        ss = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError as exc:
        raise InputError(source, f"PET {tag_name(keyword)} is not a DICOM time (HHMMSS.FFFFFF): {text!r}") from exc
    return timedelta(hours=hh, minutes=mm, seconds=ss)


def _date(text: str, keyword: str, source: str) -> date:
    try:
        return datetime.strptime(str(text).strip()[:8], "%Y%m%d").date()
    except ValueError as exc:
        raise InputError(source, f"PET {tag_name(keyword)} is not a DICOM date (YYYYMMDD): {text!r}") from exc


def _datetime(day: date, time: timedelta) -> datetime:
    return datetime(day.year, day.month, day.day) + time


def suv_parameters(ds: Dataset, source: str) -> SuvParameters:
    """The SUV parameters of a PET dataset (any instance of the series); InputError naming the tag."""
    units = str(_value(ds, "Units", source)).upper()
    if units != "BQML":
        raise InputError(source, f"PET {tag_name('Units')} is {units!r}: only BQML (Bq/mL) is converted to SUV")
    weight = _positive(ds, "PatientWeight", source)
    items = _value(ds, "RadiopharmaceuticalInformationSequence", source)
    if len(items) == 0:
        raise InputError(source, f"PET {tag_name('RadiopharmaceuticalInformationSequence')} is empty: body-weight SUV "
                                 "needs its dose, half-life and injection time")
    item, where = items[0], f" in {tag_name('RadiopharmaceuticalInformationSequence')}"
    dose = _positive(item, "RadionuclideTotalDose", source, where)
    half_life = _positive(item, "RadionuclideHalfLife", source, where)
    correction = str(_value(ds, "DecayCorrection", source)).upper()
    if correction not in DECAY_CORRECTIONS:
        raise InputError(source, f"PET {tag_name('DecayCorrection')} is {correction!r}: petclick converts "
                                 f"{' or '.join(DECAY_CORRECTIONS)} decay-corrected series only")
    series_day = _date(_value(ds, "SeriesDate", source), "SeriesDate", source)
    reference = _datetime(series_day, _time(_value(ds, "SeriesTime", source), "SeriesTime", source))
    start = item.get("RadiopharmaceuticalStartDateTime")
    if start:
        text = str(start).strip()
        injection = _datetime(_date(text[:8], "RadiopharmaceuticalStartDateTime", source),
                              _time(text[8:14] or "000000", "RadiopharmaceuticalStartDateTime", source))
    else:
        time = _value(item, "RadiopharmaceuticalStartTime", source, where)
        injection = _datetime(series_day, _time(time, "RadiopharmaceuticalStartTime", source))
    if correction == "START" and injection > reference:
        raise InputError(source, f"PET injection time {injection:%Y-%m-%d %H:%M:%S} is after the series time "
                                 f"{reference:%Y-%m-%d %H:%M:%S} ({tag_name('SeriesTime')})")
    return SuvParameters(weight, dose, half_life, injection, reference, correction)


def suv_factor(ds: Dataset, source: str) -> float:
    """SUV per Bq/mL of a PET series (module docstring)."""
    return suv_parameters(ds, source).factor


def dose_tags(ds: Dataset, params: SuvParameters, radionuclide: str = "18F", agent: str = "Fluorodeoxyglucose") -> None:
    """Write the SUV tags of `params` into a PET dataset (the inverse of suv_parameters)."""
    ds.Units = "BQML"
    ds.DecayCorrection = params.decay_correction
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT"]
    ds.PatientWeight = f"{params.weight_kg:.2f}"
    ds.SeriesDate = f"{params.reference:%Y%m%d}"
    ds.SeriesTime = f"{params.reference:%H%M%S}.{params.reference.microsecond:06d}"
    item = Dataset()
    item.Radiopharmaceutical = agent
    item.RadionuclideTotalDose = f"{params.dose_bq:.6g}"
    item.RadionuclideHalfLife = f"{params.half_life_s:.6g}"
    item.RadiopharmaceuticalStartTime = f"{params.injection:%H%M%S}.{params.injection.microsecond:06d}"
    item.RadiopharmaceuticalStartDateTime = (f"{params.injection:%Y%m%d%H%M%S}."
                                             f"{params.injection.microsecond:06d}")
    nuclide = Dataset()
    nuclide.CodeValue, nuclide.CodingSchemeDesignator = ("C-111A1", "SRT") if radionuclide == "18F" else ("C-1018C", "SRT")
    nuclide.CodeMeaning = "^18^Fluorine" if radionuclide == "18F" else "^68^Gallium"
    item.RadionuclideCodeSequence = [nuclide]
    ds.RadiopharmaceuticalInformationSequence = [item]
