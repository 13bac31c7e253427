"""Starting the label server: the MONAI_LABEL_* environment of `petclick label` and uvicorn.

Equivalent to `monailabel start_server --app <petclick/workflows/label/app> --studies DIR --conf
models M ...`, without its bash wrapper (which splits paths with spaces) and without writes into
the app folder (start_server creates model/, logs/ ... there). Training, scoring and the
datastore's file watcher are off; the random next-sample strategy (Slicer's "Next Sample") stays.
MONAI Label reads its settings from the environment when monailabel.config is first imported,
so `serve` sets them before importing the server module.

Everything the server writes goes to the scratch folder: MONAI Label's datastore file and
submitted labels, sessions/ (MONAI Label's own), results/ (answer masks), tmp/ (the process's
temporary files: uploads) and logs/server.log (rotated: 5 files of 10 MB), next to the console.
`auth_realm` turns on MONAI Label's authentication against that Keycloak realm (auth.py).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import tempfile
from pathlib import Path

from petclick.io.dicomweb import is_dicomweb
from petclick.workflows.label.options import LOGS, TMP, LabelOptions, clean_folder

APP_DIR = Path(__file__).resolve().parent / "app"
SERVER_APP = "petclick.workflows.label.server:app"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
LOG_FILE, LOG_BYTES, LOG_BACKUPS = "server.log", 10 * 2**20, 4
TRUE = ("1", "true", "yes", "on")
HOST_ENV = "PETCLICK_LABEL_HOST"


def realm_from_environment(env: dict[str, str] | None = None) -> str | None:
    """The Keycloak realm MONAI Label's own variables turn on (MONAI_LABEL_AUTH_ENABLE and _REALM_URI)."""
    env = os.environ if env is None else env
    if str(env.get("MONAI_LABEL_AUTH_ENABLE", "")).strip().lower() in TRUE:
        return env.get("MONAI_LABEL_AUTH_REALM_URI") or "http://localhost:8080/realms/monailabel"
    return None


def environment(studies: str | Path, options: LabelOptions, scratch: str | Path,
                auth_realm: str | None = None, host: str = DEFAULT_HOST) -> dict[str, str]:
    """The MONAI_LABEL_* settings of a petclick label server (and the address it listens on, for
    the server's browser policy: access.BrowserPolicy)."""
    studies = str(studies) if is_dicomweb(str(studies)) else str(Path(studies).resolve())   # OHIF's proxy reads it
    env = {HOST_ENV: host, "MONAI_LABEL_APP_DIR": str(APP_DIR), "MONAI_LABEL_STUDIES": studies,
           "MONAI_LABEL_APP_CONF": json.dumps(options.to_conf()),
           "MONAI_LABEL_SESSION_PATH": str(Path(scratch) / "sessions"),
           "MONAI_LABEL_TASKS_TRAIN": "false", "MONAI_LABEL_TASKS_SCORING": "false",
           "MONAI_LABEL_TASKS_BATCH_INFER": "false", "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
           "MONAI_LABEL_AUTH_ENABLE": "true" if auth_realm else "false"}
    if auth_realm:
        env["MONAI_LABEL_AUTH_REALM_URI"] = str(auth_realm).rstrip("/")
    return env


def log_to_scratch(scratch: str | Path) -> Path:
    """Add the rotating log file under the scratch folder to the root logger; returns its path."""
    path = Path(scratch) / LOGS / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS,
                                                   encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return path


def serve(studies: str | Path, options: LabelOptions, scratch: str | Path, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, log_level: str = "info", auth_realm: str | None = None) -> None:
    """Run the server in this process until interrupted."""
    import uvicorn

    os.environ.update(environment(studies, options, scratch, auth_realm, host))
    tempfile.tempdir = str(clean_folder(Path(scratch) / TMP))
    log_to_scratch(scratch)
    uvicorn.run(SERVER_APP, host=host, port=int(port), log_level=log_level, workers=1, log_config=None)
