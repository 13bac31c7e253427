"""petclick's own reader page, served by `petclick label` at /reader/ (beside MONAI Label's OHIF at /ohif/).

A page of one HTML file (static/reader.html, no build step, nothing fetched from outside) and the
few routes it reads, all on the label app's datastore and sessions:

| route | answer |
| --- | --- |
| GET /reader/ | the page: axial, coronal and sagittal PET/CT fusion and a coronal PET MIP; click = tumour point, shift-click = background point, undo; the mask overlaid; the time of each click shown |
| GET /reader/api/images | the datastore's images: id, case id, shape, spacing (mm), affine, display windows; a case that cannot be shown (no partner image, CT and PET of other shapes, an unreadable file) with its `error` instead |
| GET /reader/api/volume/{id}/{ct,pet} | the volume as uint8 bytes, i fastest (CT: window W400/L40 HU; PET: 0-10 SUV); headers X-Shape, X-Window |
| GET /reader/api/mask/{id}?client_id=C | the reader's session's latest mask, uint8 bytes (404 before the first result) |

Clicks go through MONAI Label's own POST /infer/petclick (the route Slicer and OHIF use), so the page
exercises exactly what a viewer does. Volumes travel whole as uint8 (one byte per voxel and layer:
154 MB at 400x400x963), which suits a reading room's network, not a slow link.

Readers: sessions are per reader and image (sessions.py). The page makes a random client id per
browser tab (kept in the tab's sessionStorage) and sends it with every click (params `client_id`)
and mask request (`?client_id=`), so two browsers never share a session; with authentication on,
the reader is the authenticated user (limits.reader_for), as for Slicer. Every route takes the
`monailabel-user` role when authentication is on, and the server's guard (guard.py, routes.py)
checks ids, sizes, origins and hosts, and queues volume reads with the inferences.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User

from petclick.io.images import load_volume
from petclick.workflows.label.limits import check_id, reader_for
from petclick.workflows.label.requests import LabelRequestError
from petclick.workflows.label.studies import pair_of

PAGE = Path(__file__).resolve().parent / "static" / "reader.html"
WINDOWS = {"ct": (-160.0, 240.0), "pet": (0.0, 10.0)}      # display range -> 0..255
USER = RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)      # one instance: FastAPI checks the token once per request
router = APIRouter(prefix="/reader", tags=["Reader"], dependencies=[Depends(USER)])


def _app():
    from monailabel.interfaces.utils.app import app_instance

    return app_instance()


def _files(image_id: str) -> dict[str, Path]:
    """The CT and PET files of a datastore image id (400 for an id that is no datastore id, 404 for
    an unknown one, 409 for one without its partner image)."""
    check_id(image_id)
    app = _app()
    uri = app.datastore().get_image_uri(image_id)
    if not uri:
        raise HTTPException(status_code=404, detail=f"unknown image id {image_id!r}")
    ct, pet = pair_of(uri, app.options.show)
    return {"ct": ct, "pet": pet}


def _described(app, image_id: str) -> dict:
    """What the page needs of an image, from the headers alone (LabelRequestError: why it cannot be shown)."""
    files = _files(image_id)
    try:
        ct, pet = nib.load(str(files["ct"])), nib.load(str(files["pet"]))
    except (OSError, ImageFileError) as exc:
        raise LabelRequestError(409, f"case {image_id}: cannot read its images ({exc})") from exc
    if ct.shape[:3] != pet.shape[:3]:
        raise LabelRequestError(409, f"case {image_id}: CT shape {ct.shape[:3]} and PET shape {pet.shape[:3]} differ")
    entry = (getattr(app, "dicomweb", None) and app.dicomweb.studies.get(image_id)) or {}
    return {"id": image_id, "case_id": entry.get("case_id", image_id), "shape": list(pet.shape[:3]),
            "spacing": [float(v) for v in pet.header.get_zooms()[:3]],
            "affine": np.asarray(pet.affine).round(6).tolist(), "windows": WINDOWS}


def to_bytes(array: np.ndarray, window: tuple[float, float]) -> bytes:
    """uint8 bytes of an (i, j, k) array in Fortran order (i fastest), the window mapped onto 0..255."""
    lo, hi = window
    scaled = np.clip((np.asarray(array, np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
    return np.rint(scaled).astype(np.uint8).tobytes(order="F")


@router.get("/", include_in_schema=False)
def page():
    return FileResponse(PAGE, media_type="text/html")


@router.get("", include_in_schema=False)
def page_redirect():
    return RedirectResponse("/reader/")


@router.get("/api/images")
def images():
    app = _app()
    out = []
    for image_id in sorted(app.datastore().list_images()):
        try:
            out.append(_described(app, image_id))
        except LabelRequestError as exc:             # listed with its reason, not dropped (the page greys it out)
            out.append({"id": image_id, "case_id": image_id, "error": exc.detail})
    return JSONResponse(out)


@router.get("/api/volume/{image_id}/{layer}")
def volume(image_id: str, layer: str):
    if layer not in WINDOWS:
        raise HTTPException(status_code=404, detail=f"unknown layer {layer!r}: ct or pet")
    vol = load_volume(_files(image_id)[layer])
    return Response(to_bytes(vol.array, WINDOWS[layer]), media_type="application/octet-stream",
                    headers={"X-Shape": ",".join(map(str, vol.array.shape)), "X-Window": "%g,%g" % WINDOWS[layer]})


@router.get("/api/mask/{image_id}")
def mask(image_id: str, client_id: str = "", user: User = Depends(USER)):
    _files(image_id)
    who = reader_for(user.username if settings.MONAI_LABEL_AUTH_ENABLE else None, client_id, "client_id", 400)
    current = _app().cache.last_mask(image_id, who)
    if current is None:
        raise HTTPException(status_code=404, detail=f"{image_id}: no result yet (click on the image first)")
    return Response(np.asarray(current, np.uint8).tobytes(order="F"), media_type="application/octet-stream",
                    headers={"X-Shape": ",".join(map(str, current.shape))})
