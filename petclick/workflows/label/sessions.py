"""One InteractiveSession per reader and image, kept in the server process between requests.

Slicer's MONAI Label module re-sends every point placed so far with each request. The cache keeps
each reader's session of a case (CT and PET read once, the ensemble's tile outputs and running
sums), sets the request's clicks as the session's next state and predicts: with a trained ensemble
only the tiles the changed clicks reach are re-run (petclick.inference.engine, mode `exact` by
default), and a state already predicted (a point removed again) costs no network pass.

Readers and concurrency:
- A session belongs to one (reader, image id): two readers on one case never see each other's
  points. The reader is the authenticated user, else the client id Slicer (or the reader page,
  one per browser tab) sends (limits.reader_for).
- Requests of one session run one at a time (its lock); requests of different sessions run in
  parallel (the server bounds how many: admission.py). Opening a case happens under the session's
  own lock, so a slow open holds up no other reader.
- A request that fails while it changes a session (set clicks, predict) drops that session: the
  next request rebuilds it from its points (Slicer re-sends them all), so no half-updated session
  is ever answered from. A client that disconnects does not interrupt the computation: the
  session ends in the request's state.

Memory: after each request the sessions' bytes (petclick.inference.footprint: volumes, network
inputs, tile caches, journals, the last prediction) are summed; while the sum is above
`memory_bytes`, or more than `max_sessions` are open, the least recently used idle session is
dropped and a log line says which and why. Before a case is opened, idle sessions are dropped
until the new one's estimated size fits. A session in use is never dropped; one larger than the
bound on its own is kept (with a warning) while it is the only one.

Every request returns the mask file (uint8, 1 = lesion, on the shown image's grid with its affine)
and a JSON object with Slicer's `label_names` plus what the request and the session cost
(`request`: reader, computed, the path taken and its bound on max |dp| from the full ensemble's
exact answer (None: unknown; InteractiveSession.counters["last"]), windows (tiles)
computed/reused, seconds; `session`: InteractiveSession.counters
and `memory_bytes`, the session's bytes by part).
The mask honours every click: petclick's click-consistency post-processing rule (on by default)
puts tumour clicks inside and background clicks outside the final mask.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import nibabel as nib
import numpy as np

from petclick.core.errors import InputError
from petclick.inference.footprint import session_nbytes
from petclick.inference.session import InteractiveSession, check_first
from petclick.io.clickset import Clicks
from petclick.io.images import CaseVolumes, checked_ct, checked_pet, load_volume, save_volume
from petclick.postprocess import make_config
from petclick.workflows.label.limits import ANONYMOUS
from petclick.workflows.label.requests import LabelRequestError, parse_clicks
from petclick.workflows.label.studies import check_pair, pair_of

log = logging.getLogger(__name__)

LABEL_NAMES = {"tumor": 1}
RESULT_PREFIX = "petclick-label-"
MB = 2**20


@dataclass
class Entry:
    """A session slot: its lock (one request at a time), the session once opened, its size."""

    reader: str
    image_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    session: InteractiveSession | None = None
    affine: np.ndarray | None = None
    nbytes: int = 0
    voxels: int = 0

    @property
    def name(self) -> str:
        return f"{self.image_id} (reader {self.reader})"


class SessionCache:
    """Sessions of one predictor keyed by (reader, image id) (module docstring). `show`: which image
    of a pair the clicks index and the mask lies on (ct | pet). `memory_bytes`: the sessions' memory
    bound (None: none); `tile_cache_mb`: each session's tile-cache limit (None: the checkpoints');
    `out_dir`: where mask files are written (None: the system's temporary folder); `first` /
    `fast_checkpoints`: step 0 (InteractiveSession; a request's `first` param overrides `first` when
    it opens the session): a fast answer is refined by the full ensemble in the background, and the
    next request at step 0 returns the refined mask once it is ready."""

    def __init__(self, predictor: Any, show: str = "ct", mode: str | None = None, max_sessions: int = 8,
                 postprocess: Mapping[str, Any] | None = None, memory_bytes: int | None = None,
                 tile_cache_mb: float | None = None, out_dir: str | Path | None = None,
                 first: str = "ensemble", fast_checkpoints: int | None = None):
        self.predictor, self.show, self.mode = predictor, show, mode
        self.first, self.fast_checkpoints = first, fast_checkpoints
        self.max_sessions = int(max_sessions)
        self.memory_bytes = None if memory_bytes is None else int(memory_bytes)
        self.tile_cache_mb = tile_cache_mb
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.postprocess = make_config() if postprocess is None else dict(postprocess)
        self.entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self.opened = 0
        self.dropped = {"memory": 0, "count": 0, "failed": 0}
        self._lock = threading.Lock()       # guards `entries` and the counters, held only briefly

    # ------------------------------------------------------------------ sessions
    @property
    def sessions(self) -> list[tuple[str, str]]:
        """(reader, image id) of the open sessions, least recently used first."""
        with self._lock:
            return [k for k, e in self.entries.items() if e.session is not None]

    def _open(self, entry: Entry, shown: Path, first: str | None = None) -> None:
        ct_path, pet_path = pair_of(shown, self.show)
        self._make_room(entry, _voxels(shown))
        try:
            ct, pet = checked_ct(load_volume(ct_path)), checked_pet(load_volume(pet_path))
        except InputError as exc:
            raise LabelRequestError(409, f"case {entry.image_id}: {exc}") from exc
        check_pair(ct, pet, entry.image_id)
        entry.affine = (ct if self.show == "ct" else pet).affine
        entry.session = InteractiveSession(self.predictor, CaseVolumes(ct, pet), mode=self.mode,
                                           postprocess=self.postprocess, tile_cache_mb=self.tile_cache_mb,
                                           source=f"{entry.image_id} params", first=first or self.first,
                                           fast_checkpoints=self.fast_checkpoints)
        entry.voxels = int(np.prod(pet.array.shape))
        with self._lock:
            self.opened += 1
        log.info("%s: session opened (%s, mode %s)", entry.name, pet.array.shape, entry.session.mode)

    def _locked_entry(self, reader: str, image_id: str) -> Entry:
        """The entry of (reader, image id), created when new, with its lock held by the caller; an
        entry dropped while this request waited for its lock is replaced by a fresh one."""
        key = (reader, image_id)
        while True:
            with self._lock:
                entry = self.entries.get(key)
                if entry is None:
                    entry = self.entries[key] = Entry(reader, image_id)
                self.entries.move_to_end(key)
            entry.lock.acquire()
            with self._lock:
                if self.entries.get(key) is entry:
                    return entry
            entry.lock.release()

    def _discard(self, entry: Entry, why: str) -> None:
        with self._lock:
            if self.entries.get((entry.reader, entry.image_id)) is entry:
                del self.entries[(entry.reader, entry.image_id)]
            self.dropped["failed"] += 1
        entry.session = None
        log.warning("%s: session dropped (%s); the next request rebuilds it from its points", entry.name, why)

    # ------------------------------------------------------------------ memory
    def _idle(self, keep: Entry) -> list[Entry]:
        """Open sessions other than `keep` whose lock is free, least recently used first (caller holds _lock)."""
        return [e for e in self.entries.values() if e is not keep and e.session is not None and not e.lock.locked()]

    def _drop(self, entry: Entry, reason: str, why: str) -> None:
        """Forget an idle session (caller holds _lock)."""
        del self.entries[(entry.reader, entry.image_id)]
        entry.session, entry.affine = None, None
        self.dropped[reason] += 1
        log.info("%s: session dropped, least recently used (%s)", entry.name, why)

    def last_mask(self, image_id: str, reader: str = ANONYMOUS) -> np.ndarray | None:
        """The latest mask of the open session of (`reader`, `image_id`) (uint8, the shown image's
        grid; the reader page reads it after each answer), None when there is none yet."""
        with self._lock:
            entry = self.entries.get((reader, image_id))
            session = None if entry is None else entry.session
        last = None if session is None else session.last
        return None if last is None else last.mask

    def memory_in_use(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self.entries.values() if e.session is not None)

    def _make_room(self, entry: Entry, voxels: int) -> None:
        """Before opening: drop idle sessions until a session of `voxels` is expected to fit."""
        if self.memory_bytes is None or voxels <= 0:
            return
        with self._lock:
            sized = [e for e in self.entries.values() if e.session is not None and e.voxels]
            per_voxel = sum(e.nbytes for e in sized) / max(1, sum(e.voxels for e in sized)) if sized else 0.0
            expected = int(per_voxel * voxels)
            used = sum(e.nbytes for e in self.entries.values() if e.session is not None)
            for victim in self._idle(entry):
                if used + expected <= self.memory_bytes:
                    break
                used -= victim.nbytes
                self._drop(victim, "memory", f"opening {entry.name}, about {expected / MB:.1f} MB, would pass the "
                                             f"memory bound of {self.memory_bytes / MB:.1f} MB")

    def _enforce(self, keep: Entry) -> None:
        """After a request: drop idle sessions while over the count or the memory bound (module docstring)."""
        with self._lock:
            for victim in self._idle(keep):
                open_ = [e for e in self.entries.values() if e.session is not None]
                used = sum(e.nbytes for e in open_)
                if len(open_) > self.max_sessions:
                    self._drop(victim, "count", f"more than {self.max_sessions} sessions open")
                elif self.memory_bytes is not None and used > self.memory_bytes:
                    self._drop(victim, "memory", f"{used / MB:.1f} MB in use, bound {self.memory_bytes / MB:.1f} MB")
                else:
                    break
            if self.memory_bytes is not None and keep.nbytes > self.memory_bytes:
                log.warning("%s: the session alone takes %.1f MB, more than the memory bound of %.1f MB; it is "
                            "kept while in use", keep.name, keep.nbytes / MB, self.memory_bytes / MB)

    def status(self) -> dict[str, Any]:
        """What /info/ reports about the sessions."""
        with self._lock:
            open_ = [e for e in self.entries.values() if e.session is not None]
            return {"sessions": len(open_), "max_sessions": self.max_sessions,
                    "readers": len({e.reader for e in open_}), "memory_bytes": sum(e.nbytes for e in open_),
                    "memory_limit_bytes": self.memory_bytes, "sessions_opened": self.opened,
                    "sessions_dropped": dict(self.dropped)}

    # ------------------------------------------------------------------ requests
    def infer(self, image_id: str, shown: str | Path, params: Mapping[str, Any], interactive: bool = True,
              out_dir: str | Path | None = None, reader: str = ANONYMOUS) -> tuple[str, dict]:
        """Predict the request's clicks (none for the automatic task: step 0) on the session of
        (`reader`, `image_id`); returns the mask file (a new file in `out_dir`, the caller removes
        it) and the JSON."""
        t0 = time.perf_counter()
        entry = self._locked_entry(reader, image_id)
        try:
            opened = entry.session is None
            if opened:
                shown = Path(shown)
                if not shown.is_file():
                    self._forget(entry)
                    raise LabelRequestError(404, f"unknown image id {image_id!r}")
                try:
                    self._open(entry, shown, _first_param(params))
                except BaseException:
                    self._forget(entry)
                    raise
            session = entry.session
            clicks = parse_clicks(params, session.case.shape, session.budget) if interactive else Clicks()
            try:
                session.set_clicks(clicks)
                last = session.last
                refined = (session.refine() if last is not None and last.path == "fast-step0"
                           and not session.refining and last.clicks == session.clicks else None)
                pred = refined or session.predict()
            except BaseException as exc:
                self._discard(entry, f"{type(exc).__name__} while predicting")
                raise
            memory = session_nbytes(session)
            entry.nbytes = memory["total"]
            counters = session.counters
            name = self._write_mask(pred.mask, entry.affine, out_dir)
        finally:
            entry.lock.release()
        self._enforce(entry)
        seconds = time.perf_counter() - t0
        log.info("%s: %d tumour + %d background click(s), %d lesion voxel(s), %.2f s (%s)", entry.name,
                 len(clicks.tumor), len(clicks.background), int(pred.mask.sum()), seconds,
                 "computed" if pred.computed else "unchanged")
        return name, {"label_names": dict(LABEL_NAMES), "image": image_id, "clicks": clicks.to_dict(),
                      "lesion_voxels": int(pred.mask.sum()),
                      "request": {"reader": reader, "session_opened": opened, "computed": bool(pred.computed),
                                  "step": pred.step, "path": pred.path, "bound": pred.bound,
                                  "refining": session.refining,
                                  "windows_computed": pred.tiles_computed, "tiles_computed": pred.tiles_computed,
                                  "tiles_reused": pred.tiles_reused, "predict_seconds": round(pred.seconds, 4),
                                  "seconds": round(seconds, 4)},
                      "session": {**counters, "memory_bytes": memory}}

    def _forget(self, entry: Entry) -> None:
        """Remove an entry whose session never opened."""
        with self._lock:
            if self.entries.get((entry.reader, entry.image_id)) is entry and entry.session is None:
                del self.entries[(entry.reader, entry.image_id)]

    def _write_mask(self, mask: np.ndarray, affine: np.ndarray, out_dir: str | Path | None) -> str:
        folder = out_dir if out_dir is not None else self.out_dir
        fd, name = tempfile.mkstemp(suffix=".nii.gz", prefix=RESULT_PREFIX, dir=folder)
        os.close(fd)
        try:
            save_volume(name, mask.astype(np.uint8), affine)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return name


def _first_param(params: Mapping[str, Any]) -> str | None:
    """A request's step-0 choice (`first` param; None: the server's), checked."""
    value = params.get("first") if isinstance(params, Mapping) else None
    if value in (None, ""):
        return None
    try:
        return check_first(str(value))
    except InputError as exc:
        raise LabelRequestError(422, f"params first: {exc.problem}") from exc


def _voxels(shown: Path) -> int:
    """Voxels of an image from its header alone (0 when it cannot be read: the open says why)."""
    try:
        return int(np.prod(nib.load(str(shown)).shape[:3]))
    except Exception:  # noqa: BLE001 - the open that follows reports a bad file
        return 0
