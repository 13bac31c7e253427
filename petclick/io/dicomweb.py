"""A DICOMweb server (QIDO-RS, WADO-RS, STOW-RS) as a source of studies and a store of results.

Through dicomweb-client (the DICOMweb client of the highdicom authors, already a requirement of the
label app). Every failure is an InputError naming the server and what failed: a server that is down
or refuses the connection, an HTTP error with its status, a study or series it does not hold.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from pydicom.dataset import Dataset

from petclick.core.errors import InputError
from petclick.io.dicom_series import IMAGE_MODALITIES, SeriesRef

log = logging.getLogger(__name__)
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)     # it logs every request at INFO
SCHEMES = ("http://", "https://")


def is_dicomweb(source: Any) -> bool:
    """True when `source` is a DICOMweb URL (http:// or https://)."""
    return isinstance(source, str) and source.lower().startswith(SCHEMES)


def _value(item: dict, tag: str, default=None):
    values = item.get(tag, {}).get("Value")
    return values[0] if values else default


def _no_bulk_data(*_args) -> None:
    """Metadata only: bulk data (pixels) stays on the server."""
    return None


class DicomWeb:
    """One DICOMweb server; `url` is its root (e.g. http://127.0.0.1:8042/dicom-web)."""

    def __init__(self, url: str):
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        self.client = DICOMwebClient(self.url)
        try:
            self.client.set_http_retry_params(retry=False)
        except (AttributeError, TypeError):
            pass

    def _call(self, what: str, fn, *args, **kwargs):
        import requests

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.HTTPError as exc:
            status = getattr(exc.response, "status_code", "?")
            raise InputError(self.url, f"DICOMweb server answered HTTP {status} to {what}") from exc
        except requests.exceptions.RequestException as exc:
            raise InputError(self.url, f"cannot reach the DICOMweb server ({what}: {type(exc).__name__})") from exc

    def studies(self) -> list[dict]:
        """QIDO-RS study records (DICOM JSON), one per study."""
        return self._call("a study search", self.client.search_for_studies) or []

    def study_uids(self) -> list[str]:
        return [str(_value(s, "0020000D")) for s in self.studies() if _value(s, "0020000D")]

    def series(self, study_uid: str) -> list[SeriesRef]:
        """The CT and PET image series of a study (headers from the series' first instance metadata)."""
        records = self._call(f"a series search of study {study_uid}", self.client.search_for_series,
                             study_instance_uid=study_uid) or []
        out = []
        for rec in records:
            modality, uid = _value(rec, "00080060"), _value(rec, "0020000E")
            if modality not in IMAGE_MODALITIES or not uid:
                continue
            headers = self.headers(study_uid, str(uid))
            if not headers:
                continue
            out.append(SeriesRef(study_uid, str(uid), str(modality), headers[0], len(headers), self.url,
                                 load=lambda s=study_uid, u=str(uid): self.retrieve(s, u)))
        return out

    def headers(self, study_uid: str, series_uid: str) -> list[Dataset]:
        """The image instances' metadata of a series (WADO-RS metadata, no pixels): enough for geometry,
        SUV tags and the references of a DICOM SEG."""
        metadata = self._call(f"the metadata of series {series_uid}", self.client.retrieve_series_metadata,
                              study_instance_uid=study_uid, series_instance_uid=series_uid)
        headers = [Dataset.from_json(m, bulk_data_uri_handler=_no_bulk_data) for m in metadata or []]
        return [h for h in headers if "ImagePositionPatient" in h]

    def retrieve(self, study_uid: str, series_uid: str) -> list[Dataset]:
        """Every instance of a series (WADO-RS), pixels included."""
        return self._call(f"retrieving series {series_uid}", self.client.retrieve_series,
                          study_instance_uid=study_uid, series_instance_uid=series_uid)

    def store(self, datasets: Sequence[Dataset]) -> None:
        """STOW-RS the datasets (e.g. a DICOM SEG)."""
        self._call("storing instances", self.client.store_instances, datasets=list(datasets))
