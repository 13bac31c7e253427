"""One InteractiveSession per image id, kept in the server process between requests.

Slicer's MONAI Label module re-sends every point placed so far with each request. The cache keeps
the case's session (CT and PET read once, the ensemble's tile outputs and running sums), sets the
request's clicks as the session's next state and predicts: with a trained ensemble only the tiles
the changed clicks reach are re-run (petclick.inference.engine, mode `exact` by default), and a
state already predicted (a point removed again) costs no network pass.

Every request returns the mask file (uint8, 1 = lesion, on the shown image's grid with its affine)
and a JSON object with Slicer's `label_names` plus what the request and the session cost
(`request`: computed, tiles computed/reused, seconds; `session`: InteractiveSession.counters).
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
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from petclick.core.errors import InputError
from petclick.inference.session import InteractiveSession
from petclick.io.images import CaseVolumes, checked_ct, checked_pet, load_volume, save_volume
from petclick.io.clickset import Clicks
from petclick.postprocess import make_config
from petclick.workflows.label.requests import LabelRequestError, parse_clicks
from petclick.workflows.label.studies import check_pair, pair_of

log = logging.getLogger(__name__)

LABEL_NAMES = {"tumor": 1}


class SessionCache:
    """Sessions of one predictor, keyed by image id, at most `max_sessions` (least recently used
    dropped first). `show`: which image of a pair the clicks index and the mask lies on (ct | pet).
    One request at a time (a lock): MONAI Label may run tasks in a thread pool."""

    def __init__(self, predictor: Any, show: str = "ct", mode: str | None = None, max_sessions: int = 4,
                 postprocess: Mapping[str, Any] | None = None):
        self.predictor, self.show, self.mode = predictor, show, mode
        self.max_sessions = int(max_sessions)
        self.postprocess = make_config() if postprocess is None else dict(postprocess)
        self.sessions: OrderedDict[str, tuple[InteractiveSession, np.ndarray]] = OrderedDict()
        self.opened = 0
        self._lock = threading.Lock()

    def _open(self, image_id: str, shown: Path) -> tuple[InteractiveSession, np.ndarray]:
        ct_path, pet_path = pair_of(shown, self.show)
        try:
            ct, pet = checked_ct(load_volume(ct_path)), checked_pet(load_volume(pet_path))
        except InputError as exc:
            raise LabelRequestError(409, f"case {image_id}: {exc}") from exc
        check_pair(ct, pet, image_id)
        affine = (ct if self.show == "ct" else pet).affine
        session = InteractiveSession(self.predictor, CaseVolumes(ct, pet), mode=self.mode,
                                     postprocess=self.postprocess, source=f"{image_id} params")
        self.opened += 1
        log.info("%s: session opened (%s, mode %s)", image_id, pet.array.shape, session.mode)
        return session, affine

    def session(self, image_id: str, shown: str | Path) -> tuple[InteractiveSession, np.ndarray, bool]:
        """The session of `image_id` (opened from its shown image file when new), its shown affine
        and whether it was opened now."""
        if image_id in self.sessions:
            self.sessions.move_to_end(image_id)
            return (*self.sessions[image_id], False)
        shown = Path(shown)
        if not shown.is_file():
            raise LabelRequestError(404, f"unknown image id {image_id!r}")
        entry = self._open(image_id, shown)
        self.sessions[image_id] = entry
        while len(self.sessions) > self.max_sessions:
            dropped, _ = self.sessions.popitem(last=False)
            log.info("%s: session dropped (more than %d open)", dropped, self.max_sessions)
        return (*entry, True)

    def last_mask(self, image_id: str) -> np.ndarray | None:
        """The latest mask of an open session (uint8, the shown image's grid), None when none was predicted."""
        with self._lock:
            entry = self.sessions.get(image_id)
            last = entry[0].last if entry else None
            return None if last is None else last.mask

    def infer(self, image_id: str, shown: str | Path, params: Mapping[str, Any], interactive: bool = True,
              out_dir: str | Path | None = None) -> tuple[str, dict]:
        """Predict the request's clicks (none for the automatic task: step 0) on the image's session;
        returns the mask file (a new temporary .nii.gz, the caller removes it) and the JSON."""
        t0 = time.perf_counter()
        with self._lock:
            session, affine, opened = self.session(image_id, shown)
            clicks = parse_clicks(params, session.case.shape, session.budget) if interactive else Clicks()
            session.set_clicks(clicks)
            pred = session.predict()
            fd, name = tempfile.mkstemp(suffix=".nii.gz", prefix="petclick-label-", dir=out_dir)
            os.close(fd)
            save_volume(name, pred.mask.astype(np.uint8), affine)
            counters = session.counters
        seconds = time.perf_counter() - t0
        log.info("%s: %d tumour + %d background click(s), %d lesion voxel(s), %.2f s (%s)", image_id,
                 len(clicks.tumor), len(clicks.background), int(pred.mask.sum()), seconds,
                 "computed" if pred.computed else "unchanged")
        return name, {"label_names": dict(LABEL_NAMES), "image": image_id, "clicks": clicks.to_dict(),
                      "lesion_voxels": int(pred.mask.sum()),
                      "request": {"session_opened": opened, "computed": bool(pred.computed), "step": pred.step,
                                  "tiles_computed": pred.tiles_computed, "tiles_reused": pred.tiles_reused,
                                  "predict_seconds": round(pred.seconds, 4), "seconds": round(seconds, 4)},
                      "session": counters}
