"""The uvicorn entry of `petclick label`: MONAI Label's FastAPI app with petclick's guard rails.

    uvicorn petclick.workflows.label.server:app      (the MONAI_LABEL_* settings set: launch.py)

- The shims (shims.py) are applied before monailabel is imported; auth.py makes MONAI Label's
  token check work under PyJWT 2.
- guard.py's middleware runs first on every request: browsers (access.BrowserPolicy: the Origin
  and Host headers), target and query checks, the endpoint policy (routes.py), body limits, the
  worker queue with its 429 (admission.py). MONAI Label's CORS (every origin) is replaced by the
  `--allow-origin` list (none by default).
- Routes put ahead of MONAI Label's own:
  - POST /infer/{model}: params decoded within their limits (limits.py), an unknown model (404),
    a DICOMweb study refused at start (409 with its reason), an image id the datastore does not
    list (404), an uploaded volume, label or a Slicer session (422), no image (422); then MONAI
    Label's inference with the reader set: the authenticated user, else the `client_id` Slicer or
    the reader page sends (sessions are per reader and image). A plain `def`, so it runs in
    FastAPI's thread pool and /info/ stays answered meanwhile.
  - PUT /datastore/label (Submit Label): a listed image, a plain tag, a label file of a known
    kind, params within the limits; it is written under the scratch folder's labels/<tag>/.
  - GET /info/: MONAI Label's info plus `petclick` (workers, queue, sessions, memory).
  - GET /logs/: the end of the server's log file in the scratch folder.
- petclick's reader page and its API at /reader/ (reader.py); with DICOMweb studies MONAI Label's
  OHIF at /ohif/ and its DICOMweb proxy (reads only) are let through the guard (routes.py).
- Errors: LabelRequestError -> its status, petclick's InputError -> 422, MONAILabelException ->
  400, a request's invalid fields -> 422, an authentication server that refuses -> 401 or cannot be
  reached -> 503, a file that cannot be written (disk full: 507; read-only or no permission: 503);
  each {"detail": one line} and a log line. Anything else is a bug of the server: a 500 whose
  detail names the exception, the traceback in the server's log.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections import deque
from pathlib import Path
from typing import Optional

from petclick.workflows.label import shims

SHIMS = shims.apply()

import requests  # noqa: E402
from fastapi import BackgroundTasks, Depends, File, Form, UploadFile  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse  # noqa: E402
from fastapi.routing import APIRoute  # noqa: E402
from monailabel.app import app  # noqa: E402  MONAI Label's FastAPI application
from monailabel.config import settings  # noqa: E402
from monailabel.endpoints.datastore import save_label  # noqa: E402
from monailabel.endpoints.infer import ResultType, run_inference  # noqa: E402
from monailabel.endpoints.info import app_info  # noqa: E402
from monailabel.endpoints.user.auth import RBAC, User  # noqa: E402
from monailabel.interfaces.datastore import DefaultLabelTag  # noqa: E402
from monailabel.interfaces.exception import MONAILabelException  # noqa: E402
from monailabel.interfaces.utils.app import app_instance  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.middleware.cors import CORSMiddleware  # noqa: E402

from petclick.core.errors import InputError  # noqa: E402
from petclick.io.dicomweb import is_dicomweb  # noqa: E402
from petclick.workflows.label import auth, reader  # noqa: E402
from petclick.workflows.label.access import BrowserPolicy, is_loopback  # noqa: E402
from petclick.workflows.label.admission import Admission  # noqa: E402
from petclick.workflows.label.dicomweb_studies import refused_reason  # noqa: E402
from petclick.workflows.label.guard import BodyLimits, RequestGuard  # noqa: E402
from petclick.workflows.label.launch import DEFAULT_HOST, HOST_ENV  # noqa: E402
from petclick.workflows.label.limits import (READER_KEY, check_id, check_name, decode_json,  # noqa: E402
                                             decode_params, reader_for)
from petclick.workflows.label.options import LabelOptions  # noqa: E402
from petclick.workflows.label.requests import LabelRequestError, storage_failure  # noqa: E402

log = logging.getLogger(__name__)
__all__ = ["app"]

OPTIONS = LabelOptions.from_conf(settings.MONAI_LABEL_APP_CONF)     # the app's own settings (launch.py sets them)
ADMISSION = Admission(OPTIONS.workers, OPTIONS.queue)
AUTH = auth.install()
LIMITS = BodyLimits(params=OPTIONS.params_kb * 1024, upload=OPTIONS.upload_mb * 2**20, json=OPTIONS.params_kb * 1024)
LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd")
LOG_LINES_MAX = 10000

BROWSERS = BrowserPolicy(OPTIONS.allow_origins, loopback_only=is_loopback(os.environ.get(HOST_ENV, DEFAULT_HOST)))
app.user_middleware[:] = [m for m in app.user_middleware if m.cls is not CORSMiddleware]   # MONAI Label's: every origin
app.user_middleware.insert(0, Middleware(CORSMiddleware, allow_origins=list(OPTIONS.allow_origins),
                                         allow_credentials=True, allow_methods=["*"], allow_headers=["*"]))
app.user_middleware.append(Middleware(RequestGuard, admission=ADMISSION, limits=LIMITS, browsers=BROWSERS,
                                      dicomweb=is_dicomweb(settings.MONAI_LABEL_STUDIES)))


def _known_image(image: str) -> None:
    if not image:
        raise LabelRequestError(422, "no image id given (?image=<id>, an id of GET /datastore/?output=all)")
    check_id(image)
    instance = app_instance()
    refused_reason(getattr(instance, "dicomweb", None), image)        # a DICOMweb study that could not be read
    if not instance.datastore().get_image_uri(image):
        raise LabelRequestError(404, f"unknown image id {image!r} (GET /datastore/?output=all lists the ids)")


def check_request(model: str, image: str, session_id: str, uploaded: bool) -> None:
    """Refuse what the tasks cannot serve before MONAI Label sees it (module docstring)."""
    models = app_instance().info()["models"]
    if model not in models:
        raise LabelRequestError(404, f"unknown model {model[:60]!r}; this server has {', '.join(sorted(models))}")
    if session_id or uploaded:
        raise LabelRequestError(422, "petclick segments the images of its datastore only (it needs each case's CT "
                                     "and PET): open the case from the server (Next Sample) instead of a local volume")
    _known_image(image)


def reader_of(user: User, params: dict) -> str:
    """Whose session a request works on: the authenticated user, else the client id sent in params."""
    return reader_for(user.username if AUTH else None, params.get("client_id"))


def strict_infer(background_tasks: BackgroundTasks, model: str, image: str = "", session_id: str = "",
                 params: str = Form("{}"), file: UploadFile = File(None), label: UploadFile = File(None),
                 output: Optional[ResultType] = None,
                 user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
    values = decode_params(params, OPTIONS.params_kb * 1024)
    check_request(model, image, session_id, file is not None or label is not None)
    values[READER_KEY] = reader_of(user, values)
    return run_inference(background_tasks, model, image, "", json.dumps(values), None, None, output)


def strict_save_label(background_tasks: BackgroundTasks, image: str, params: str = Form("{}"),
                      tag: str = DefaultLabelTag.FINAL.value, label: UploadFile = File(...),
                      user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
    _known_image(image)
    tag = check_name(tag or DefaultLabelTag.FINAL.value, "label tag")
    name = (label.filename or "").lower()
    suffix = next((s for s in LABEL_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise LabelRequestError(422, f"label file {label.filename!r:.80} is not {', '.join(LABEL_SUFFIXES)}")
    info = decode_json(params, "params", OPTIONS.params_kb * 1024) if params and params.strip() else {}
    if not isinstance(info, dict):
        raise LabelRequestError(422, f"params must be a JSON object, got {type(info).__name__}")
    label.filename = f"label{suffix}"          # MONAI Label takes the stored file's suffix from this name
    return save_label(background_tasks, image, json.dumps(info), tag, label, user.username)


def petclick_info(user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
    info = app_info()
    instance = app_instance()
    cache = getattr(instance, "cache", None)
    info["petclick"] = {**ADMISSION.status(), **(cache.status() if cache is not None else {}),
                        "authentication": AUTH}
    return info


def server_log(lines: int = 300, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))):
    scratch = getattr(app_instance(), "scratch", None)
    path = None if scratch is None else Path(scratch) / "logs" / "server.log"
    if path is None or not path.is_file():
        raise LabelRequestError(404, "the server writes no log file")
    with open(path, errors="replace") as f:
        tail = deque(f, max(1, min(int(lines), LOG_LINES_MAX)))
    return PlainTextResponse("".join(tail))


for path, endpoint, methods, summary in (
        ("/infer/{model}", strict_infer, ["POST"], "Run petclick inference (validated)"),
        ("/datastore/label", strict_save_label, ["PUT"], "Save a finished label (validated, into the scratch folder)"),
        ("/info/", petclick_info, ["GET"], "App info, with petclick's workers, queue, sessions and memory"),
        ("/logs/", server_log, ["GET"], "The end of the server's log (scratch folder)")):
    app.router.routes.insert(0, APIRoute(path, endpoint, methods=methods, summary=summary))
app.include_router(reader.router)       # petclick's own reader page at /reader/ (MONAI Label serves OHIF at /ohif/)


def _detail(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": " ".join(str(detail).split())}, headers=headers)


@app.exception_handler(LabelRequestError)
async def _label_request_error(_request, exc: LabelRequestError):
    return _detail(exc.status, exc.detail, getattr(exc, "headers", None))


@app.exception_handler(InputError)
async def _input_error(_request, exc: InputError):
    return _detail(422, str(exc))


@app.exception_handler(MONAILabelException)
async def _monailabel_error(_request, exc: MONAILabelException):
    return _detail(400, exc.msg)


@app.exception_handler(RequestValidationError)
async def _validation_error(_request, exc: RequestValidationError):
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return _detail(422, "; ".join(parts) or "invalid request")


@app.exception_handler(requests.RequestException)
async def _auth_server_error(_request, exc: requests.RequestException):
    response = getattr(exc, "response", None)
    if response is not None and 400 <= response.status_code < 500:
        return _detail(401, f"the authentication server refused the credentials (HTTP {response.status_code})")
    log.error("authentication server: %s: %s", type(exc).__name__, exc)
    return _detail(503, f"the authentication server cannot be reached ({type(exc).__name__})")


@app.exception_handler(OSError)
async def _storage_error(request, exc: OSError):
    failure = storage_failure(exc)
    if failure is None:
        return await _server_error(request, exc)
    log.error("cannot write %s: %s (%s); the request is refused, the server goes on", exc.filename or "a file",
              exc.strerror, errno.errorcode.get(exc.errno, exc.errno))
    return _detail(failure.status, failure.detail)


@app.exception_handler(Exception)
async def _server_error(_request, exc: Exception):
    log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return _detail(500, f"internal server error: {type(exc).__name__}: {exc}")
