"""The label app's settings: what `petclick label` passes to MONAI Label as `--conf` strings.

MONAI Label hands an app its `--conf KEY VALUE` pairs as strings (MONAI_LABEL_APP_CONF, JSON);
LabelOptions reads and writes them, so `petclick label` and a hand-written
`monailabel start_server --conf models ...` configure the same app:

| key | value | default |
| --- | --- | --- |
| models | model spec(s) of petclick's get_predictor: a work_dir, bundle folders, .pt files or `suv-threshold`; several joined by `,` (or a JSON list) | required |
| device | torch device of the ensemble | cpu |
| incremental | the session's re-inference mode: naive, exact, local, frozen (empty: the checkpoints' own, else exact) | (checkpoints') |
| first | step 0: ensemble (the full ensemble answers) or fast (fast_checkpoints answer at once, the full ensemble refines in the background; a request's `first` param overrides it when it opens the session) | ensemble |
| fast_checkpoints | checkpoints of the fast step 0 | 2 |
| show | which image of a case the viewer shows and the clicks index: ct (`_0000`) or pet (`_0001`) | ct |
| scratch | where MONAI Label's datastore files and submitted labels go (the studies folder is never written) | ~/.cache/petclick/label/<folder>-<hash> |
| sessions | sessions kept in memory (one per reader and image, least recently used dropped first) | 8 |
| memory_mb | memory bound of the sessions, tile caches included (least recently used dropped first) | half the machine's memory |
| tile_cache_mb | tile-cache limit of each session (exact mode) | the checkpoints' `infer.tile_cache_mb`, else 2048 |
| workers | requests computed at once (different sessions run in parallel) | 2 |
| queue | requests waiting for a worker; past it a request is answered 429 | 8 |
| params_kb | largest `params` of a request (the form field), KiB | 64 |
| upload_mb | largest uploaded label (Submit Label), MiB | 512 |
| allow_origins | web origins whose pages may use the server (CORS), a JSON list | none: no other origin |
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from petclick.core.errors import InputError
from petclick.workflows.label.access import origin_of

SHOW_CHOICES = ("ct", "pet")
DEFAULT_SESSIONS = 8
DEFAULT_WORKERS = 2
DEFAULT_QUEUE = 8
DEFAULT_PARAMS_KB = 64
DEFAULT_UPLOAD_MB = 512
#: the settings that are counts or sizes: conf key -> (type, smallest value)
NUMBERS = {"sessions": (int, 1), "workers": (int, 1), "queue": (int, 0), "memory_mb": (float, 1.0),
           "tile_cache_mb": (float, 0.0), "params_kb": (int, 1), "upload_mb": (int, 1), "fast_checkpoints": (int, 1)}


def machine_memory_mb() -> float:
    """This machine's physical memory in MiB (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):
        return 0.0


def default_memory_mb() -> float:
    """The default memory bound: half the machine's memory (8 GiB where unknown)."""
    total = machine_memory_mb()
    return total / 2 if total > 0 else 8192.0


#: the scratch folder's parts written by the server itself: mask files of answers, MONAI Label's
#: temporary files (uploads), the server's log (MONAI Label adds datastore_v2.json, labels/ and sessions/)
RESULTS, TMP, LOGS = "results", "tmp", "logs"


def clean_folder(folder: Path) -> Path:
    """`folder` created, and emptied of the files a stopped or killed server left there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.iterdir():
        if leftover.is_file() or leftover.is_symlink():
            leftover.unlink(missing_ok=True)
    return folder


def scratch_for(images: Path) -> Path:
    """The default scratch folder of an images folder: one per folder (MONAI Label's datastore file
    records the images folder, so two studies folders must not share one)."""
    images = Path(images).resolve()
    digest = hashlib.sha1(str(images).encode()).hexdigest()[:10]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "petclick" / "label" / f"{images.parent.name}-{images.name}-{digest}"


def _models(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        text = str(value or "").strip()
        if text.startswith("["):
            try:
                items = [str(v) for v in json.loads(text)]
            except (ValueError, TypeError) as exc:
                raise InputError("conf models", f"not a JSON list of model paths ({exc})") from exc
        else:
            items = [t.strip() for t in text.split(",")]
    items = [m for m in items if m]
    if not items:
        raise InputError("conf models", "no model given: a work_dir, bundle folders, .pt files or suv-threshold")
    return items


def _origins(value) -> tuple[str, ...]:
    """The allowed web origins of the conf (a JSON list, or origins joined by ',')."""
    if not value:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    text = str(value).strip()
    try:
        items = json.loads(text) if text.startswith("[") else text.split(",")
    except ValueError as exc:
        raise InputError("conf allow_origins", f"not a JSON list of origins ({exc})") from exc
    return tuple(str(v).strip() for v in items if str(v).strip())


def _number(conf: Mapping[str, str], key: str, kind: type) -> float | int | None:
    """A count or size conf string as `kind` (None when absent or empty)."""
    text = conf.get(key)
    if text is None or str(text).strip() == "":
        return None
    try:
        return kind(str(text).strip())
    except ValueError as exc:
        noun = "a whole number" if kind is int else "a number"
        raise InputError(f"conf {key}", f"must be {noun}, got {text!r}") from exc


@dataclass(frozen=True)
class LabelOptions:
    """The app's settings (module docstring)."""

    models: tuple[str, ...]
    device: str = "cpu"
    incremental: str | None = None
    show: str = "ct"
    scratch: str | None = None
    sessions: int = DEFAULT_SESSIONS
    memory_mb: float | None = None
    tile_cache_mb: float | None = None
    workers: int = DEFAULT_WORKERS
    queue: int = DEFAULT_QUEUE
    params_kb: int = DEFAULT_PARAMS_KB
    upload_mb: int = DEFAULT_UPLOAD_MB
    allow_origins: tuple[str, ...] = ()
    first: str = "ensemble"
    fast_checkpoints: int | None = None

    def __post_init__(self):
        from petclick.inference.session import check_first

        try:
            object.__setattr__(self, "first", check_first(self.first))
        except InputError as exc:
            raise InputError("conf first", exc.problem) from exc
        if self.show not in SHOW_CHOICES:
            raise InputError("conf show", f"must be one of {', '.join(SHOW_CHOICES)}, got {self.show!r}")
        object.__setattr__(self, "allow_origins", tuple(origin_of(o) for o in self.allow_origins))
        for key, (_kind, least) in NUMBERS.items():
            value = getattr(self, key)
            if value is not None and value < least:
                raise InputError(f"conf {key}", f"must be at least {least:g}, got {value:g}")

    @property
    def memory_bytes(self) -> int:
        """The sessions' memory bound in bytes (`memory_mb`, else half the machine's memory)."""
        return int((self.memory_mb if self.memory_mb is not None else default_memory_mb()) * 2**20)

    @classmethod
    def from_conf(cls, conf: Mapping[str, str]) -> "LabelOptions":
        """Options from MONAI Label's conf strings (unknown keys are MONAI Label's own and ignored)."""
        numbers = {key: _number(conf, key, kind) for key, (kind, _least) in NUMBERS.items()}
        return cls(models=tuple(_models(conf.get("models"))), device=str(conf.get("device") or "cpu"),
                   incremental=conf.get("incremental") or None, show=str(conf.get("show") or "ct").lower(),
                   scratch=conf.get("scratch") or None, allow_origins=_origins(conf.get("allow_origins")),
                   first=str(conf.get("first") or "ensemble"),
                   **{k: v for k, v in numbers.items() if v is not None})

    def to_conf(self) -> dict[str, str]:
        """The conf strings MONAI Label passes back to from_conf."""
        conf = {"models": json.dumps(list(self.models)), "device": self.device, "show": self.show}
        conf.update({key: str(getattr(self, key)) for key in NUMBERS if getattr(self, key) is not None})
        if self.incremental:
            conf["incremental"] = self.incremental
        if self.scratch:
            conf["scratch"] = str(self.scratch)
        if self.first != "ensemble":
            conf["first"] = self.first
        if self.allow_origins:
            conf["allow_origins"] = json.dumps(list(self.allow_origins))
        return conf
