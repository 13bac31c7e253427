"""A throw-away Orthanc (Debian's `orthanc` + `orthanc-dicomweb`) for the DICOMweb tests: its own
configuration and storage in a temporary folder, HTTP on a free loopback port, no DICOM port, the
DICOMweb plugin at /dicom-web/. `OrthancServer.skip_reason()` says why it cannot run here (None: it can).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

from petclick.workflows.label.process import free_port, stop_group, wait_until_up

ORTHANC = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class OrthancServer:
    """Orthanc until `stop()` (or the `with` block ends); `.url` its REST root, `.dicomweb` its DICOMweb root."""

    @staticmethod
    def skip_reason() -> str | None:
        if shutil.which(ORTHANC) is None:
            return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; .ci/run does)"
        if not DICOMWEB_PLUGIN.is_file():
            return f"the Orthanc DICOMweb plugin is not installed ({DICOMWEB_PLUGIN}; apt-get install orthanc-dicomweb)"
        return None

    def __init__(self, root: Path, start_timeout_s: float = 60):
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.url}/dicom-web"
        config = {"Name": "petclick-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
                  "HttpPort": self.port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
                  "DicomServerEnabled": False, "HttpCompressionEnabled": False,
                  "Plugins": [str(DICOMWEB_PLUGIN)],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False,
                               "StudiesMetadata": "Full", "SeriesMetadata": "Full"}}
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.log = root / "orthanc.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([ORTHANC, str(self.config)], stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            wait_until_up(self.proc, f"{self.url}/system", start_timeout_s, "Orthanc")
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}:\n{self.log.read_text()[-2000:]}") from None

    def upload(self, folder: Path) -> int:
        """POST every .dcm under `folder` to /instances; returns how many were stored."""
        n = 0
        for path in sorted(Path(folder).rglob("*.dcm")):
            req = urllib.request.Request(f"{self.url}/instances", data=path.read_bytes(), method="POST",
                                         headers={"Content-Type": "application/dicom"})
            with urllib.request.urlopen(req, timeout=30) as r:
                n += r.status == 200
        return n

    def get(self, path: str):
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        stop_group(self.proc, signal.SIGTERM, 30)

    def __enter__(self) -> "OrthancServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
