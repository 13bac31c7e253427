"""Which of MONAI Label's endpoints the label server serves, with what body, and why it refuses the others.

MONAI Label's FastAPI app has some fifty endpoints; petclick serves what 3D Slicer's module needs
to list cases, fetch them, segment with points and submit labels, and nothing else. A request for
an endpoint in `REFUSED` is answered 403 with the reason; one matching no entry is a 404 (so an
endpoint a later MONAI Label adds is not served until it is listed here); a method a served path
does not take is a 405. Each served entry names the body it takes, which sets its size limit
(guard.py): `none`, `form` and `json` (small; JSON nesting checked), `params` (the infer form:
params plus multipart framing) and `upload` (a submitted label). `admitted` entries compute on a
session and go through the worker queue (admission.py).

Beside MONAI Label's endpoints: petclick's reader page and its API (reader.py, `READER`), on every
studies folder. With DICOMweb studies (`--studies http://.../dicom-web`, `judge(..., dicomweb=True)`)
also MONAI Label's OHIF build at /ohif/ and the read half of the DICOMweb proxy OHIF loads the
studies through (`DICOMWEB`: GET of QIDO-RS and WADO-RS under /proxy/dicom/); storing into the
DICOMweb server through the proxy (STOW-RS, any POST) and its other paths are refused. A NIfTI
studies folder has no DICOM for OHIF to show, and the proxy would forward to a file path: both are
refused there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ANY = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")
READ = ("GET", "HEAD")
BODIES = ("none", "form", "json", "params", "upload")


@dataclass(frozen=True)
class Route:
    """A served path (regular expression over the whole decoded path) and its methods and body."""

    path: str
    methods: tuple[str, ...] = READ
    body: str = "none"
    admitted: bool = False
    pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.body not in BODIES:
            raise ValueError(f"route {self.path}: body {self.body!r} is not one of {BODIES}")
        object.__setattr__(self, "pattern", re.compile(self.path))


@dataclass(frozen=True)
class Refused:
    """A MONAI Label endpoint petclick does not serve, and why (the 403's detail)."""

    path: str
    reason: str
    methods: tuple[str, ...] = ANY
    pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "pattern", re.compile(self.path))


REFUSED = (
    Refused(r"/datastore/(image)?", "the studies folder is read-only: images are not added or removed over HTTP",
            ("PUT", "DELETE")),
    Refused(r"/datastore/label", "submitted labels are kept; remove them from the scratch folder by hand", ("DELETE",)),
    Refused(r"/datastore/(image/info|label/info|updatelabelinfo)", "image and label records are not edited over HTTP",
            ("PUT",)),
    Refused(r"/datastore/dataset", "the dataset archive is not served; copy the studies folder instead"),
    Refused(r"/model(/.*)?", "models are loaded at start (--models), not served or replaced over HTTP"),
    Refused(r"/(train|scoring|batch)(/.*)?", "training, scoring and batch inference are off in petclick label"),
    Refused(r"/infer/wsi(_v2)?/.*", "petclick segments 3D PET/CT, not whole-slide images"),
    Refused(r"/session(/.*)?", "petclick segments the datastore's cases only (it needs each case's CT and PET): "
                               "open the case with Next Sample instead of uploading a volume"),
    Refused(r"/logs/gpu", "GPU information is not served"),
    Refused(r"/reload", "the app is not reloaded over HTTP: restart the server"),
)
#: refused only with a NIfTI studies folder
REFUSED_WITHOUT_DICOMWEB = (
    Refused(r"/(ohif|proxy)(/.*)?", "OHIF and its DICOMweb proxy are served with DICOMweb studies only (--studies "
                                    "http://HOST/dicom-web), not for a NIfTI studies folder: use /reader/ or Slicer"),
)
#: refused only with DICOMweb studies (the proxy's write half and its other paths)
REFUSED_WITH_DICOMWEB = (
    Refused(r"/proxy/dicom/(?!(qido|wado)/).*", "the DICOMweb proxy serves reads only (QIDO-RS, WADO-RS under "
                                                "/proxy/dicom/qido/ and /proxy/dicom/wado/)"),
    Refused(r"/proxy/dicom/(qido|wado)/.+", "the DICOMweb proxy serves reads only: nothing is stored into the DICOMweb "
                                            "server through it (petclick stores its SEGs itself)",
            ("POST", "PUT", "DELETE", "PATCH")),
)

SERVED = (
    Route(r"/"), Route(r"/docs"), Route(r"/openapi\.json"), Route(r"/favicon\.ico"), Route(r"/static/.+"),
    Route(r"/info/?"),
    Route(r"/infer/[^/]+", ("POST",), "params", admitted=True),
    Route(r"/activelearning/[^/]+", ("POST",), "json"),
    Route(r"/datastore/?"), Route(r"/datastore/image"), Route(r"/datastore/image/info"),
    Route(r"/datastore/label"), Route(r"/datastore/label", ("PUT",), "upload"), Route(r"/datastore/label/info"),
    Route(r"/auth/?"), Route(r"/auth/token", ("POST",), "form"), Route(r"/auth/token/valid"),
    Route(r"/logs/?"),
)
#: petclick's reader page and its API (reader.py); a volume is read and converted whole, so it
#: takes a worker like an inference does
READER = (
    Route(r"/reader/?"), Route(r"/reader/api/images"), Route(r"/reader/api/volume/[^/]+/(ct|pet)", admitted=True),
    Route(r"/reader/api/mask/[^/]+"),
)
#: served with DICOMweb studies only: OHIF (static files) and the read half of its DICOMweb proxy
DICOMWEB = (Route(r"/ohif(/.*)?"), Route(r"/proxy/dicom/(qido|wado)/.+"))


@dataclass(frozen=True)
class Verdict:
    """What the policy says of a request: the route served, or an HTTP status and its reason."""

    route: Route | None
    status: int = 200
    reason: str = ""


def judge(method: str, path: str, dicomweb: bool = False) -> Verdict:
    """The policy's answer for `method` on the decoded `path`; `dicomweb`: the studies are a DICOMweb
    server (module docstring)."""
    method = method.upper()
    check = "GET" if method == "OPTIONS" else method          # a CORS preflight asks about a served route
    refusals = REFUSED + (REFUSED_WITH_DICOMWEB if dicomweb else REFUSED_WITHOUT_DICOMWEB)
    for refused in refusals:
        if check in refused.methods and refused.pattern.fullmatch(path):
            return Verdict(None, 403, f"{method} {path} is not served by petclick label: {refused.reason}")
    served = SERVED + READER + (DICOMWEB if dicomweb else ())
    matching = [r for r in served if r.pattern.fullmatch(path)]
    for route in matching:
        if check in route.methods or (method == "OPTIONS"):
            return Verdict(route)
    if matching:
        allowed = sorted({m for r in matching for m in r.methods})
        return Verdict(None, 405, f"{method} {path}: method not allowed (allowed: {', '.join(allowed)})")
    return Verdict(None, 404, f"{method} {path}: no such endpoint on petclick label (GET /docs lists them)")
