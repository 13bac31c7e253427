"""`petclick label`: serve petclick's interactive session to 3D Slicer through a MONAI Label server."""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

from petclick.commands.predict import add_first_args
from petclick.core.errors import InputError
from petclick.inference.engine import MODES as INCREMENTAL_MODES
from petclick.io.dicomweb import is_dicomweb
from petclick.workflows.label.access import check_exposure
from petclick.workflows.label.dicomweb_studies import cache_for, prepare
from petclick.workflows.label.launch import DEFAULT_HOST, DEFAULT_PORT, realm_from_environment, serve
from petclick.workflows.label.options import (DEFAULT_PARAMS_KB, DEFAULT_QUEUE, DEFAULT_SESSIONS, DEFAULT_UPLOAD_MB,
                                              DEFAULT_WORKERS, SHOW_CHOICES, LabelOptions, scratch_for)
from petclick.workflows.label.studies import images_folder

log = logging.getLogger(__name__)
INSTALL_HINT = ("pip install -r requirements-label.txt && pip install --no-deps monailabel==0.8.5 pydicom-seg==0.4.1 "
                "(docs/reader.md)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="MONAI Label server for 3D Slicer: click-guided segmentation of an autoPET folder",
                       description="Starts a MONAI Label server over an autoPET-layout folder (imagesTr/<case>_0000 CT, "
                                   "<case>_0001 PET). Tasks: petclick (tumour/background points, re-inferred "
                                   "incrementally per image) and petclick_auto (no clicks). The studies folder is "
                                   "only read.")
    p.add_argument("--studies", required=True,
                   help="autoPET root (its imagesTr/), an images folder, or a DICOMweb server root "
                        "(http://HOST:PORT/dicom-web: its PET/CT studies, results stored back as DICOM SEG)")
    p.add_argument("--models", required=True, nargs="+", metavar="MODEL",
                   help="AutoRunner work_dir, bundle folders or .pt checkpoints (all ensembled), or 'suv-threshold'")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; any other address needs "
                        "--auth-realm or --insecure)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--device", default="auto", help="torch device of the ensemble: auto (cuda when available, else "
                                                    "cpu), cpu, cuda or cuda:N")
    p.add_argument("--incremental", choices=INCREMENTAL_MODES, default=None,
                   help="re-inference after a click (default: the checkpoints' infer.incremental, else exact)")
    add_first_args(p)
    p.add_argument("--show", choices=SHOW_CHOICES, default=None,
                   help="the image the viewer shows and the points index (default ct; the PET is found by its name; "
                        "DICOMweb: pet, the series on whose grid CT and masks lie)")
    p.add_argument("--scratch", type=Path, default=None,
                   help="MONAI Label's datastore files and submitted labels (default ~/.cache/petclick/label/...)")
    p.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS,
                   help=f"sessions (one per reader and case) kept in memory (default {DEFAULT_SESSIONS})")
    p.add_argument("--memory-mb", type=float, default=None,
                   help="memory bound of the sessions, tile caches included; least recently used dropped past it "
                        "(default: half the machine's memory)")
    p.add_argument("--tile-cache-mb", type=float, default=None,
                   help="tile-cache limit of each session (default: the checkpoints' infer.tile_cache_mb, else 2048)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"requests computed at once, on different sessions (default {DEFAULT_WORKERS})")
    p.add_argument("--queue", type=int, default=DEFAULT_QUEUE,
                   help=f"requests waiting for a worker; past it the answer is 429 (default {DEFAULT_QUEUE})")
    p.add_argument("--params-kb", type=int, default=DEFAULT_PARAMS_KB,
                   help=f"largest params field of a request, KiB (default {DEFAULT_PARAMS_KB}; past it 413)")
    p.add_argument("--upload-mb", type=int, default=DEFAULT_UPLOAD_MB,
                   help=f"largest submitted label, MiB (default {DEFAULT_UPLOAD_MB}; past it 413)")
    p.add_argument("--auth-realm", default=None, metavar="URL",
                   help="require MONAI Label's authentication: the Keycloak realm, e.g. "
                        "https://keycloak.example.org/realms/monailabel (docs/server.md)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                   help="a web origin whose pages may use the server (a browser client such as OHIF on another "
                        "address, or the reverse proxy's public address); repeatable; default: none")
    p.add_argument("--insecure", action="store_true",
                   help="serve without authentication on an address beyond loopback (logs a warning)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("monailabel") is None:
        raise InputError("monailabel", f"not installed; {INSTALL_HINT}")
    from petclick.inference.predictors import get_predictor

    dicomweb = is_dicomweb(args.studies)
    show = args.show or ("pet" if dicomweb else "ct")
    if dicomweb and show != "pet":
        raise InputError("--show ct", "a DICOM study's CT lies on its own grid: with DICOMweb studies the viewer shows "
                                      "the PET series (CT resampled onto it)")
    if dicomweb:
        scratch = args.scratch.resolve() if args.scratch else cache_for(args.studies)
    else:
        images = images_folder(args.studies, show)
        scratch = args.scratch.resolve() if args.scratch else scratch_for(images)
    from petclick.commands.predict import resolve_device

    options = LabelOptions(models=tuple(str(m) for m in args.models), device=resolve_device(args.device), incremental=args.incremental,
                           show=show, scratch=str(scratch) if (dicomweb or args.scratch) else None,
                           sessions=args.sessions, memory_mb=args.memory_mb, tile_cache_mb=args.tile_cache_mb,
                           workers=args.workers, queue=args.queue, params_kb=args.params_kb,
                           upload_mb=args.upload_mb, allow_origins=tuple(args.allow_origin), first=args.first,
                           fast_checkpoints=args.fast_checkpoints)
    realm = args.auth_realm or realm_from_environment()
    warning = check_exposure(args.host, args.port, auth=bool(realm), insecure=args.insecure)
    get_predictor(list(options.models), device=options.device, cached=True)   # a bad model fails here, in one line
    if dicomweb:
        studies = prepare(args.studies, scratch)     # a server that is down fails here, in one line
        print(f"petclick label: {len(studies.studies)} PET/CT stud(ies) from {args.studies}"
              + (f", {len(studies.refused)} refused (see the log)" if studies.refused else ""), flush=True)
    if warning:
        log.warning(warning)
    log.info("petclick label: http://%s:%d/ (MONAI Label server; %s; Ctrl-C stops it)", args.host, args.port,
             f"authentication: {realm}" if realm else "no authentication")
    serve(args.studies, options, scratch, host=args.host, port=args.port, auth_realm=realm)
    return 0
