"""Which of MONAI Label's endpoints the label server serves, with what body, and why it refuses the others.

MONAI Label's FastAPI app has some fifty endpoints; petclick serves what 3D Slicer's module needs
to list cases, fetch them, segment with points and submit labels, and nothing else. A request for
an endpoint in `REFUSED` is answered 403 with the reason; one matching no entry is a 404 (so an
endpoint a later MONAI Label adds is not served until it is listed here); a method a served path
does not take is a 405. Each served entry names the body it takes, which sets its size limit
(guard.py): `none`, `form` and `json` (small; JSON nesting checked), `params` (the infer form:
params plus multipart framing) and `upload` (a submitted label). `admitted` entries compute on a
session and go through the worker queue (admission.py).
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
    Refused(r"/(ohif|proxy)(/.*)?", "OHIF and the DICOMweb proxy are not served for a NIfTI studies folder"),
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


@dataclass(frozen=True)
class Verdict:
    """What the policy says of a request: the route served, or an HTTP status and its reason."""

    route: Route | None
    status: int = 200
    reason: str = ""


def judge(method: str, path: str) -> Verdict:
    """The policy's answer for `method` on the decoded `path` (module docstring)."""
    method = method.upper()
    check = "GET" if method == "OPTIONS" else method          # a CORS preflight asks about a served route
    for refused in REFUSED:
        if check in refused.methods and refused.pattern.fullmatch(path):
            return Verdict(None, 403, f"{method} {path} is not served by petclick label: {refused.reason}")
    matching = [r for r in SERVED if r.pattern.fullmatch(path)]
    for route in matching:
        if check in route.methods or (method == "OPTIONS"):
            return Verdict(route)
    if matching:
        allowed = sorted({m for r in matching for m in r.methods})
        return Verdict(None, 405, f"{method} {path}: method not allowed (allowed: {', '.join(allowed)})")
    return Verdict(None, 404, f"{method} {path}: no such endpoint on petclick label (GET /docs lists them)")
