"""The label app's settings: what `petclick label` passes to MONAI Label as `--conf` strings.

MONAI Label hands an app its `--conf KEY VALUE` pairs as strings (MONAI_LABEL_APP_CONF, JSON);
LabelOptions reads and writes them, so `petclick label` and a hand-written
`monailabel start_server --conf models ...` configure the same app:

| key | value | default |
| --- | --- | --- |
| models | model spec(s) of petclick's get_predictor: a work_dir, bundle folders, .pt files or `suv-threshold`; several joined by `,` (or a JSON list) | required |
| device | torch device of the ensemble | cpu |
| incremental | the session's re-inference mode: naive, exact, local (empty: the checkpoints' own, else exact) | (checkpoints') |
| show | which image of a case the viewer shows and the clicks index: ct (`_0000`) or pet (`_0001`) | ct |
| scratch | where MONAI Label's datastore files and submitted labels go (the studies folder is never written) | ~/.cache/petclick/label/<folder>-<hash> |
| sessions | sessions kept in memory (one per image id, least recently used dropped first) | 4 |
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from petclick.core.errors import InputError

SHOW_CHOICES = ("ct", "pet")
DEFAULT_SESSIONS = 4


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


@dataclass(frozen=True)
class LabelOptions:
    """The app's settings (module docstring)."""

    models: tuple[str, ...]
    device: str = "cpu"
    incremental: str | None = None
    show: str = "ct"
    scratch: str | None = None
    sessions: int = DEFAULT_SESSIONS

    def __post_init__(self):
        if self.show not in SHOW_CHOICES:
            raise InputError("conf show", f"must be one of {', '.join(SHOW_CHOICES)}, got {self.show!r}")
        if self.sessions < 1:
            raise InputError("conf sessions", f"must be at least 1, got {self.sessions}")

    @classmethod
    def from_conf(cls, conf: Mapping[str, str]) -> "LabelOptions":
        """Options from MONAI Label's conf strings (unknown keys are MONAI Label's own and ignored)."""
        try:
            sessions = int(conf.get("sessions") or DEFAULT_SESSIONS)
        except ValueError as exc:
            raise InputError("conf sessions", f"must be a whole number, got {conf.get('sessions')!r}") from exc
        return cls(models=tuple(_models(conf.get("models"))), device=str(conf.get("device") or "cpu"),
                   incremental=conf.get("incremental") or None, show=str(conf.get("show") or "ct").lower(),
                   scratch=conf.get("scratch") or None, sessions=sessions)

    def to_conf(self) -> dict[str, str]:
        """The conf strings MONAI Label passes back to from_conf."""
        conf = {"models": json.dumps(list(self.models)), "device": self.device, "show": self.show,
                "sessions": str(self.sessions)}
        if self.incremental:
            conf["incremental"] = self.incremental
        if self.scratch:
            conf["scratch"] = str(self.scratch)
        return conf
