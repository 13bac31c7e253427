"""Starting the label server: the MONAI_LABEL_* environment of `petclick label` and uvicorn.

Equivalent to `monailabel start_server --app <petclick/workflows/label/app> --studies DIR --conf
models M ...`, without its bash wrapper (which splits paths with spaces) and without writes into
the app folder (start_server creates model/, logs/ ... there). Training, scoring and the
datastore's file watcher are off; the random next-sample strategy (Slicer's "Next Sample") stays.
MONAI Label reads its settings from the environment when monailabel.config is first imported,
so `serve` sets them before importing the server module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from petclick.io.dicomweb import is_dicomweb
from petclick.workflows.label.options import LabelOptions

APP_DIR = Path(__file__).resolve().parent / "app"
SERVER_APP = "petclick.workflows.label.server:app"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def environment(studies: str | Path, options: LabelOptions, scratch: str | Path) -> dict[str, str]:
    """The MONAI_LABEL_* settings of a petclick label server."""
    studies = str(studies) if is_dicomweb(str(studies)) else str(Path(studies).resolve())   # OHIF's proxy reads it
    return {"MONAI_LABEL_APP_DIR": str(APP_DIR), "MONAI_LABEL_STUDIES": studies,
            "MONAI_LABEL_APP_CONF": json.dumps(options.to_conf()),
            "MONAI_LABEL_SESSION_PATH": str(Path(scratch) / "sessions"),
            "MONAI_LABEL_TASKS_TRAIN": "false", "MONAI_LABEL_TASKS_SCORING": "false",
            "MONAI_LABEL_TASKS_BATCH_INFER": "false", "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false"}


def serve(studies: str | Path, options: LabelOptions, scratch: str | Path, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, log_level: str = "info") -> None:
    """Run the server in this process until interrupted."""
    import uvicorn

    os.environ.update(environment(studies, options, scratch))
    uvicorn.run(SERVER_APP, host=host, port=int(port), log_level=log_level, workers=1)
