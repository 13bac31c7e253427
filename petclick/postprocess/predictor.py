"""A Predictor with post-processing: wraps any predictor so the protocol/evaluation scores the final masks."""

from __future__ import annotations

import numpy as np

from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes
from petclick.postprocess.pipeline import make_config, postprocess, resolve_tracer


class PostprocessedPredictor:
    """`.predict(case, clicks)` = post-processed mask (float32 0/1) of the wrapped predictor's probability.

    The tracer is given, or classified once per case from the PET MIP (cached by the PET array).
    """

    def __init__(self, predictor, config: dict | str | None = None, tracer: str | None = None):
        self.predictor = predictor
        self.config = make_config(config)
        self.tracer = tracer
        self.name = f"{getattr(predictor, 'name', 'predictor')}+pp"
        self._tracer_for: tuple[object, str] | None = None

    def _case_tracer(self, case: CaseVolumes) -> str:
        if self.tracer in ("fdg", "psma"):
            return self.tracer
        if self._tracer_for is None or self._tracer_for[0] is not case.pet.array:
            self._tracer_for = (case.pet.array, resolve_tracer(None, case))
        return self._tracer_for[1]

    def predict(self, case: CaseVolumes, clicks: Clicks | None) -> np.ndarray:
        prob = self.predictor.predict(case, clicks or Clicks())
        return postprocess(prob, case, clicks, self._case_tracer(case), self.config).astype(np.float32)
