"""The uvicorn entry of `petclick label`: MONAI Label's FastAPI app with petclick's guard rails.

    uvicorn petclick.workflows.label.server:app      (the MONAI_LABEL_* settings set: launch.py)

- The shims (shims.py) are applied before monailabel is imported.
- POST /infer/{model} is served by a validating route put ahead of MONAI Label's own, so a bad
  request is a 4xx with a one-line JSON `detail`, never a 500 with a traceback:
  params that are not a JSON object (422), an unknown model (404), an image id the datastore does
  not list (404: MONAI Label itself would also take any server file path as an "image"), an
  uploaded file or a Slicer session (422: the PET partner of a loose file is unknown), no image (422).
  It is a plain `def`, so FastAPI runs it in its thread pool and /info/ stays answered meanwhile.
- Errors inside a task: LabelRequestError -> its status, petclick's InputError -> 422,
  MONAILabelException -> 400; all as {"detail": message}. Anything else is a bug of the server: a
  500 whose detail names the exception (Slicer shows it), the traceback in the server's log.
"""

from __future__ import annotations

import json
import logging
from typing import Optional

from petclick.workflows.label import shims

SHIMS = shims.apply()

from fastapi import BackgroundTasks, Depends, File, Form, UploadFile  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from fastapi.routing import APIRoute  # noqa: E402
from monailabel.app import app  # noqa: E402  MONAI Label's FastAPI application
from monailabel.config import settings  # noqa: E402
from monailabel.endpoints.infer import ResultType, run_inference  # noqa: E402
from monailabel.endpoints.user.auth import RBAC, User  # noqa: E402
from monailabel.interfaces.exception import MONAILabelException  # noqa: E402
from monailabel.interfaces.utils.app import app_instance  # noqa: E402

from petclick.core.errors import InputError  # noqa: E402
from petclick.workflows.label import reader  # noqa: E402
from petclick.workflows.label.dicomweb_studies import refused_reason  # noqa: E402
from petclick.workflows.label.requests import LabelRequestError  # noqa: E402

log = logging.getLogger(__name__)
__all__ = ["app"]


def decode_params(params: str) -> dict:
    """The `params` form field as a JSON object (422 otherwise)."""
    try:
        value = json.loads(params) if params and params.strip() else {}
    except ValueError as exc:
        raise LabelRequestError(422, f"params is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise LabelRequestError(422, f"params must be a JSON object, got {type(value).__name__}")
    return value


def check_request(model: str, image: str, session_id: str, uploaded: bool) -> None:
    """Refuse what the tasks cannot serve before MONAI Label sees it (module docstring)."""
    instance = app_instance()
    models = instance.info()["models"]
    if model not in models:
        raise LabelRequestError(404, f"unknown model {model!r}; this server has {', '.join(sorted(models))}")
    if session_id or uploaded:
        raise LabelRequestError(422, "petclick segments the images of its datastore only (it needs each case's CT "
                                     "and PET): open the case from the server (Next Sample) instead of a local volume")
    if not image:
        raise LabelRequestError(422, "no image id given (?image=<id>, an id of GET /datastore/?output=all)")
    refused_reason(getattr(instance, "dicomweb", None), image)        # a DICOMweb study that could not be read
    if not instance.datastore().get_image_uri(image):
        raise LabelRequestError(404, f"unknown image id {image!r} (GET /datastore/?output=all lists the ids)")


def strict_infer(background_tasks: BackgroundTasks, model: str, image: str = "", session_id: str = "",
                 params: str = Form("{}"), file: UploadFile = File(None), label: UploadFile = File(None),
                 output: Optional[ResultType] = None,
                 user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
    decode_params(params)
    check_request(model, image, session_id, file is not None)
    return run_inference(background_tasks, model, image, session_id, params, file, label, output)


app.router.routes.insert(0, APIRoute("/infer/{model}", strict_infer, methods=["POST"],
                                     summary="Run petclick inference (validated)"))
app.include_router(reader.router)       # petclick's own reader page at /reader/ (MONAI Label serves OHIF at /ohif/)


@app.exception_handler(LabelRequestError)
async def _label_request_error(_request, exc: LabelRequestError):
    return JSONResponse(status_code=exc.status, content={"detail": exc.detail})


@app.exception_handler(InputError)
async def _input_error(_request, exc: InputError):
    return JSONResponse(status_code=422, content={"detail": str(exc)})


@app.exception_handler(MONAILabelException)
async def _monailabel_error(_request, exc: MONAILabelException):
    return JSONResponse(status_code=400, content={"detail": exc.msg})


@app.exception_handler(Exception)
async def _server_error(_request, exc: Exception):
    log.error("internal error: %s: %s", type(exc).__name__, exc)
    return JSONResponse(status_code=500, content={"detail": f"internal server error: {type(exc).__name__}: {exc}"})
