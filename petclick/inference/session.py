"""InteractiveSession: one model set on one case, click by click (every petclick entry point runs on it).

    session = InteractiveSession.open("work_dir", ct="x_0000.nii.gz", pet="x_0001.nii.gz")
    session.add_clicks(tumor=[(120, 88, 140)])
    p = session.predict()          # p.mask, p.prob on the PET grid; p.changed: box of what changed
    session.undo(); session.reset()
    session.save("state/")         # a fresh process: InteractiveSession.load("state/") continues

- Models: anything `get_predictor` loads (AutoRunner work_dir, bundle folders, .pt files,
  `suv-threshold`, a mapping of step ranges to those) or a predictor object. Trained ensembles run
  on petclick.inference.engine (modes naive | exact | local); any other predictor is called once
  per changed click state. A model choice by step (petclick.inference.routing) gets one engine per
  model set, each fed only the click states of its steps: its tile cache and undo journal hold
  only its own outputs, so switching model between steps never mixes two models' tiles.
- Case: CT and PET files (repaired as `petclick predict` repairs them) or arrays with their affine.
  Preprocessing runs once per case.
- Clicks are PET voxel indices, checked by petclick.io.clickpolicy (outside the volume: an error
  by default, dropped with a warning under `drop-outside`; at most 10 per kind).
- Each `add_clicks` is one step; `undo()` goes back one step (down to the first, no clicks),
  `reset()` to the first. Returning to a state already predicted costs no network pass.
- `predict()` post-processes as `petclick predict` does (`postprocess`: a config dict; None keeps
  the plain prob >= 0.5 threshold the protocol scores). A predict with unchanged clicks computes
  nothing.
- Step 0 (`first`): `ensemble` (the default) answers the first prediction with the full
  ensemble; `fast` answers it at once from `fast_checkpoints` (the first K of the ensemble's
  checkpoints, or a list, e.g. chosen on validation folds by petclick.inference.subset), and runs
  the full ensemble's step 0 in a background thread: `refine()` waits for it and returns the
  ensemble's step-0 prediction; the next click waits for it too (clicks build on the full pass).
- `counters` (mode, predictions, tiles computed and reused, cache bytes) are what a server reports;
  `counters["last"]` says what the latest prediction did: its path (`full`: a full pass, `naive`,
  `exact`, `local`, `frozen`, `restore`: undo from the journal, `unchanged`, `predictor`: a
  predictor that is no trained ensemble), windows computed, seconds, and `bound`: the largest
  |dp| it may differ from the full ensemble's exact answer (EXACT_BOUND where the state equals a
  full pass, None where no bound is known: crop paths and checkpoint subsets); `counters["paths"]`
  counts the predictions by path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from petclick.core.boxes import bounding_box
from petclick.core.errors import InputError
from petclick.inference.engine import EnsembleEngine, LocalSettings, check_mode
from petclick.inference.predictor import EnsemblePredictor
from petclick.inference.predictors import get_predictor
from petclick.inference.routing import StepRoutedPredictor, parse_step_routes
from petclick.io.clickfile import Clicks
from petclick.io.clickpolicy import BUDGET, ClickPolicy, apply_click_policy
from petclick.io.images import CaseVolumes, Volume, load_volume, save_volume
from petclick.metrics.protocol import to_mask

log = logging.getLogger(__name__)
#: max |dp| of a state equal to a full pass (exact mode's tested tolerance; float rounding only).
EXACT_BOUND = 1e-6
STATE_VERSION = 1
#: Step-0 choices (`first`): the full ensemble, or a fast subset refined in the background.
FIRST_CHOICES = ("ensemble", "fast")
#: Checkpoints of the fast step-0 answer when no subset is given.
DEFAULT_FAST_CHECKPOINTS = 2
STATE_FILE = "session.json"


@dataclass
class Prediction:
    """One prediction of a session: mask (uint8) and probability (float32) on the PET grid, the box
    (slices) of the voxels whose mask differs from the previous prediction (None: none), the step
    and clicks it belongs to, and what it cost."""

    mask: np.ndarray
    prob: np.ndarray
    changed: tuple[slice, ...] | None
    step: int
    clicks: Clicks
    computed: bool
    tiles_computed: int
    tiles_reused: int
    seconds: float
    path: str = "unchanged"
    bound: float | None = None

    @property
    def report(self) -> dict[str, Any]:
        """What this prediction did (per click): the path taken, windows computed and reused,
        seconds, and the bound on max |dp| from the full ensemble's exact answer (None: unknown)."""
        return {"step": self.step, "path": self.path, "windows_computed": self.tiles_computed,
                "windows_reused": self.tiles_reused, "seconds": round(self.seconds, 4), "bound": self.bound}


def _clean(points: Iterable[Sequence[int]] | None) -> list[tuple[int, int, int]]:
    out = []
    for p in points or ():
        q = tuple(int(c) for c in p)
        if len(q) != 3:
            raise InputError("clicks", f"a click needs 3 voxel indices, got {list(p)}")
        out.append(q)
    return out


def fingerprint(case: CaseVolumes) -> str:
    """Identity of a case for saved states: PET shape, affine and voxel values."""
    h = hashlib.sha1()
    h.update(repr(case.shape).encode())
    h.update(np.asarray(case.affine, np.float64).round(6).tobytes())
    h.update(np.ascontiguousarray(case.pet.array, np.float32).tobytes())
    return h.hexdigest()


def _atomic_write(path: Path, write) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    tmp.replace(path)
    return path


class InteractiveSession:
    """A model set on one case with clicks, undo and incremental re-inference (module docstring).

    mode: naive | exact | local (None: the checkpoints' `infer.incremental`, else exact); ignored
    for predictors that are not trained ensembles. postprocess: a petclick.postprocess config (None:
    threshold only). tracer: for the post-processing rules that need one (None: from the PET).
    click_policy / budget: petclick.io.clickpolicy. tile_cache_mb: byte limit of the tile cache.
    checkpoints / tta_axes: a subset of the ensemble and its mirror axes (time budget, TTA)."""

    def __init__(self, predictor: Any, case: CaseVolumes, mode: str | None = None,
                 postprocess: Mapping[str, Any] | None = None, tracer: str | None = None,
                 click_policy: ClickPolicy | str | None = ClickPolicy.STRICT, budget: int | None = BUDGET,
                 tile_cache_mb: float | None = None, checkpoints: Sequence[Any] | None = None,
                 tta_axes: Sequence[int] | None = None, local: LocalSettings | None = None,
                 source: str | Path | None = None, spec: Mapping[str, Any] | None = None,
                 first: str = "ensemble", fast_checkpoints: int | Sequence[Any] | None = None):
        self.predictor, self.case = predictor, case
        self.first = check_first(first)
        self.fast_checkpoints = fast_checkpoints
        self._background: threading.Thread | None = None
        self._background_error: BaseException | None = None
        self._refining_answer = False
        self.postprocess = None if postprocess is None else dict(postprocess)
        self.tracer = tracer
        self.policy, self.budget = ClickPolicy.parse(click_policy), budget
        self.source = str(source) if source is not None else "clicks"
        self.spec = dict(spec or {})
        self.checkpoints, self.tta_axes = checkpoints, tta_axes
        self.routed = predictor if isinstance(predictor, StepRoutedPredictor) else None
        members = self.routed.members if self.routed is not None else [predictor]
        if self.routed is not None and checkpoints is not None:
            raise InputError("checkpoints", "a checkpoint subset needs one model set, not a model choice by step")
        ensembles = [m for m in members if isinstance(m, EnsemblePredictor)]
        modes = {check_mode(mode if mode is not None else default_mode(m)) for m in ensembles}
        self.mode = (modes.pop() if len(modes) == 1 else "mixed") if ensembles else "predictor"
        self._engine_args = (mode, tile_cache_mb, local)
        self._members = list(members)
        self._engines: list[EnsembleEngine | None] = [None] * len(members)
        if self.routed is None and ensembles:
            self._engine(0)
        self._history: list[Clicks] = [Clicks()]
        self._last: Prediction | None = None
        self._last_clicks: Clicks | None = None
        self.predictions = 0
        self.computed = 0
        self.paths: dict[str, int] = {}

    def _engine(self, n: int) -> EnsembleEngine | None:
        """The engine of member `n` (built on first use; None for a predictor that is no trained ensemble)."""
        member = self._members[n]
        if self._engines[n] is None and isinstance(member, EnsemblePredictor):
            mode, cache_mb, local = self._engine_args
            mode = check_mode(mode if mode is not None else default_mode(member))
            cache = cache_mb if cache_mb is not None else default_cache_mb(member)
            settings = local if local is not None else default_local_settings(member)
            self._engines[n] = EnsembleEngine(member, self.case, mode, self.checkpoints, self.tta_axes, cache,
                                              local=settings)
        return self._engines[n]

    @property
    def engine(self) -> EnsembleEngine | None:
        """The engine of the model set that predicts the current clicks (None: not a trained ensemble)."""
        n = self.routed.index(self.clicks) if self.routed is not None else 0
        return self._engine(n)

    @property
    def engines(self) -> list[EnsembleEngine]:
        """Every engine built so far (one per model set of a choice by step)."""
        return [e for e in self._engines if e is not None]

    def _tiles(self) -> tuple[int, int]:
        """Tiles computed and reused so far, over every engine."""
        counts = [e.counters.as_dict() for e in self.engines]
        return sum(c["tiles_computed"] for c in counts), sum(c["tiles_reused"] for c in counts)

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, models: Any, ct: str | Path | np.ndarray, pet: str | Path | np.ndarray,
             affine: np.ndarray | None = None, device: str = "cpu", algo_weights: Mapping[str, float] | None = None,
             tta_flip_axes: Sequence[int] = (), **kwargs: Any) -> "InteractiveSession":
        """A session from a model spec (`get_predictor`'s, or a predictor object) and a case: CT and
        PET files, or CT and PET arrays on one grid with its `affine`."""
        spec: dict[str, Any] = {}
        names = [models] if isinstance(models, (str, Path)) else models
        if isinstance(names, Mapping):
            names = parse_step_routes(names, "models")
        if isinstance(names, Mapping) or (isinstance(names, (list, tuple)) and names
                                          and all(isinstance(m, (str, Path)) for m in names)):
            listed = dict(names) if isinstance(names, Mapping) else [str(m) for m in names]
            spec = {"models": listed, "device": str(device),
                    "algo_weights": None if algo_weights is None else dict(algo_weights),
                    "tta_flip_axes": list(tta_flip_axes)}
            models = _predictor_from_spec(spec)
        if isinstance(ct, (str, Path)) and isinstance(pet, (str, Path)):
            from petclick.io.casefiles import load_prediction_case

            case = load_prediction_case(ct, pet)
            spec.update(ct=str(Path(ct).resolve()), pet=str(Path(pet).resolve()))
        else:
            if affine is None:
                raise InputError("session", "arrays need their affine (PET grid)")
            a = np.asarray(affine, np.float64)
            ct_arr, pet_arr = np.asarray(ct, np.float32), np.asarray(pet, np.float32)
            if ct_arr.shape != pet_arr.shape or pet_arr.ndim != 3:
                raise InputError("session", f"CT {ct_arr.shape} and PET {pet_arr.shape} must be 3D arrays of one shape")
            case = CaseVolumes(Volume(ct_arr, a), Volume(pet_arr, a))
        return cls(models, case, spec=spec, **kwargs)

    # ------------------------------------------------------------------ clicks
    @property
    def clicks(self) -> Clicks:
        """The clicks of the current step."""
        c = self._history[-1]
        return Clicks(list(c.tumor), list(c.background))

    @property
    def step(self) -> int:
        """Steps taken since the first (each add_clicks or changing set_clicks is one)."""
        return len(self._history) - 1

    def _checked(self, clicks: Clicks) -> Clicks:
        return apply_click_policy(clicks, self.case.shape, self.source, self.policy, self.budget)

    def add_clicks(self, tumor: Iterable[Sequence[int]] | None = None,
                   background: Iterable[Sequence[int]] | None = None) -> Clicks:
        """Append clicks (PET voxel indices) as one step; returns the clicks now in force."""
        cur = self._history[-1]
        new = self._checked(Clicks(cur.tumor + _clean(tumor), cur.background + _clean(background)))
        self._history.append(new)
        return self.clicks

    def set_clicks(self, clicks: Clicks) -> Clicks:
        """Replace the clicks (one step, unless they equal the current ones); what the step loop uses."""
        new = self._checked(Clicks(_clean(clicks.tumor), _clean(clicks.background)))
        if new != self._history[-1]:
            self._history.append(new)
        return self.clicks

    def undo(self) -> bool:
        """Back one step; False (nothing done) at the first step."""
        if len(self._history) == 1:
            return False
        self._history.pop()
        return True

    def reset(self) -> None:
        """Back to the first step (no clicks); the history is cleared."""
        self._history = [Clicks()]

    # ------------------------------------------------------------------ step 0, fast first
    def _fast_step0(self, engine: EnsembleEngine) -> np.ndarray | None:
        """`first: fast`: the step-0 probability of the fast subset, with the full ensemble's step 0
        started in the background (None where the fast path does not apply)."""
        if self.first != "fast" or engine.clicks is not None or self._background is not None:
            return None
        ckpts = list(engine.predictor.checkpoints if self.checkpoints is None else self.checkpoints)
        fast = self.fast_checkpoints if self.fast_checkpoints is not None else DEFAULT_FAST_CHECKPOINTS
        subset = ckpts[:int(fast)] if isinstance(fast, int) else [Path(c) for c in fast]
        if len(subset) >= len(ckpts):
            return None
        quick = EnsembleEngine(engine.predictor, self.case, "naive", subset, self.tta_axes, None)
        prob, _ = quick.update(Clicks())

        def full() -> None:
            try:
                engine.update(Clicks())
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                self._background_error = exc

        self._background = threading.Thread(target=full, name="petclick-step0", daemon=True)
        self._background.start()
        self._path, self._bound = "fast-step0", None
        return prob

    def _join(self) -> None:
        """Wait for the background step 0 (if any); its error is raised here."""
        if self._background is not None:
            self._background.join()
            self._background = None
            if self._background_error is not None:
                exc, self._background_error = self._background_error, None
                raise exc

    @property
    def refining(self) -> bool:
        """Whether the full ensemble's step 0 still runs in the background (`first: fast`)."""
        return self._background is not None and self._background.is_alive()

    def refine(self) -> Prediction | None:
        """Wait for the full ensemble's step 0 (`first: fast`) and, while the session is still at
        the clicks of that answer, predict again from it; None when there was nothing to refine."""
        if self._background is None:
            return None
        self._join()
        if self._last is None or self._last.path != "fast-step0":
            return None
        clicks = self._last_clicks
        self._last, self._last_clicks = None, None        # the fast answer is superseded
        if clicks != self.clicks:
            return None
        self._refining_answer = True
        return self.predict()

    # ------------------------------------------------------------------ prediction
    def _probability(self, clicks: Clicks) -> tuple[np.ndarray, bool]:
        n = self.routed.index(clicks) if self.routed is not None else 0
        engine = self._engine(n)
        if engine is not None:
            if not clicks.tumor and not clicks.background and self.routed is None:
                fast = self._fast_step0(engine)
                if fast is not None:
                    return fast, True
            self._join()
            prob, box = engine.update(clicks)
            fresh = box is not None or self._refining_answer     # the background's full pass is new here
            self._refining_answer = False
            subset = self.checkpoints is not None and len(self.checkpoints) < len(engine.predictor.checkpoints)
            self._path = engine.last_path if fresh else "unchanged"
            self._bound = EXACT_BOUND if engine.exact and not subset else None
            return prob, fresh
        self._path, self._bound = "predictor", None
        if self._last_clicks is not None and self._last_clicks == clicks and self._last is not None:
            self._path = "unchanged"
            return self._last.prob, False
        p = self._members[n]
        if (self.checkpoints is not None or self.tta_axes) and hasattr(p, "predict_with"):
            ckpts = list(p.checkpoints) if self.checkpoints is None else list(self.checkpoints)
            prob = p.predict_with(ckpts, tuple(self.tta_axes or ()), self.case, clicks)
        else:
            prob = p.predict(self.case, clicks)
        prob = np.asarray(prob)
        if prob.shape != self.case.shape:
            raise InputError(getattr(p, "name", "predictor"),
                             f"prediction shape {prob.shape} differs from the PET grid {self.case.shape}")
        return prob, True

    def _mask(self, prob: np.ndarray, clicks: Clicks) -> np.ndarray:
        if self.postprocess is None:
            return to_mask(prob, self.case.shape, getattr(self.predictor, "name", "predictor"))
        from petclick.postprocess import postprocess, resolve_tracer

        cfg = self.postprocess
        needs_tracer = any(cfg.get(rule, {}).get("enabled") for rule in ("fn_recovery", "suv_filter"))
        if self.tracer is None and needs_tracer:
            self.tracer = resolve_tracer(None, self.case)
        return postprocess(prob, self.case, clicks, self.tracer, cfg)

    def predict(self) -> Prediction:
        """Mask and probability for the current clicks (see module docstring)."""
        t0 = time.perf_counter()
        clicks = self.clicks
        self._path, self._bound = "unchanged", None if self._last is None else self._last.bound
        if self._background is not None and self._last_clicks != clicks:
            self._join()               # a click builds on the full ensemble's step 0
        c0 = self._tiles()
        if self._last is not None and self._last_clicks == clicks:
            prob, computed = self._last.prob, False
        else:
            prob, computed = self._probability(clicks)
        if computed or self._last is None or self._last_clicks != clicks:
            mask = np.asarray(self._mask(prob, clicks)).astype(np.uint8)
        else:
            mask = self._last.mask
        changed = None
        if self._last is None:
            changed = tuple(slice(0, s) for s in mask.shape)
        elif mask is not self._last.mask:
            changed = bounding_box(mask != self._last.mask)
        c1 = self._tiles()
        self.predictions += 1
        self.computed += int(computed)
        out = Prediction(mask, prob, changed, self.step, clicks, computed,
                         c1[0] - c0[0], c1[1] - c0[1],
                         time.perf_counter() - t0, self._path, self._bound)
        self.paths[self._path] = self.paths.get(self._path, 0) + 1
        self._last, self._last_clicks = out, clicks
        return out

    @property
    def last(self) -> Prediction | None:
        """The latest prediction (None before the first)."""
        return self._last

    @property
    def counters(self) -> dict[str, Any]:
        """What the session has cost so far (for a server to report)."""
        out: dict[str, Any] = {"mode": self.mode, "step": self.step, "predictions": self.predictions,
                               "predictions_computed": self.computed, "paths": dict(self.paths),
                               "last": None if self._last is None else self._last.report}
        engines = self.engines
        if len(engines) == 1 and self.routed is None:
            e = engines[0]
            out.update(e.counters.as_dict(), tiles_per_pass=e.tiles_per_pass, cache_bytes=e.cache_bytes,
                       cache_limit_bytes=None if e.cache is None else e.cache.limit,
                       cache_refused=0 if e.cache is None else e.cache.refused, journal_steps=len(e.journal))
        elif engines:
            computed, reused = self._tiles()
            out.update(tiles_computed=computed, tiles_reused=reused, cache_bytes=sum(e.cache_bytes for e in engines),
                       cache_refused=sum(0 if e.cache is None else e.cache.refused for e in engines),
                       model_sets=[None if e is None else e.counters.as_dict() for e in self._engines])
        return out

    # ------------------------------------------------------------------ state
    def save(self, folder: str | Path) -> Path:
        """Write the state (clicks of every step, last mask and probability, the engine's running
        sums and undo journal, the model and case spec) to `folder`; each file atomically, the
        state file last. Returns the state file."""
        import torch

        self._join()                       # the engine's state includes the full step 0
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        last = self._last
        if last is not None:
            tmp = folder / f".mask.tmp{os.getpid()}.nii.gz"     # nibabel gzips by the name's suffix
            save_volume(tmp, last.mask.astype(np.uint8), self.case.affine).replace(folder / "mask.nii.gz")
            _atomic_write(folder / "prob.npy", lambda p: _save_npy(p, last.prob))
        if self.engines:
            engine_state = (self._engines[0].state_dict() if self.routed is None else
                            {"by_step": [None if e is None else e.state_dict() for e in self._engines]})
            _atomic_write(folder / "engine.pt", lambda p: torch.save(engine_state, p))
        state = {"version": STATE_VERSION, "mode": self.mode, "history": [c.to_dict() for c in self._history],
                 "last_clicks": None if self._last_clicks is None else self._last_clicks.to_dict(),
                 "postprocess": self.postprocess, "tracer": self.tracer, "click_policy": self.policy.value,
                 "budget": self.budget,
                 "checkpoints": None if self.checkpoints is None else [str(c) for c in self.checkpoints],
                 "tta_axes": None if self.tta_axes is None else list(self.tta_axes), "spec": self.spec,
                 "case": fingerprint(self.case), "counters": self.counters}
        return _atomic_write(folder / STATE_FILE, lambda p: p.write_text(json.dumps(state, indent=1) + "\n"))

    @classmethod
    def load(cls, folder: str | Path, predictor: Any = None, case: CaseVolumes | None = None,
             **kwargs: Any) -> "InteractiveSession":
        """The session saved in `folder`; the models and case come from the saved spec unless given
        (a session built from arrays needs `case`). The case must be the one saved."""
        import torch

        folder = Path(folder)
        path = folder / STATE_FILE
        if not path.is_file():
            raise InputError(path, "no saved session here")
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(path, f"unreadable session state ({exc})") from exc
        if state.get("version") != STATE_VERSION:
            raise InputError(path, f"session state version {state.get('version')} "
                                   f"(this petclick reads {STATE_VERSION})")
        spec = state.get("spec") or {}
        if predictor is None:
            if "models" not in spec:
                raise InputError(path, "the session was built from a predictor object: pass `predictor`")
            predictor = _predictor_from_spec(spec)
        if case is None:
            if "pet" not in spec:
                raise InputError(path, "the session was built from arrays: pass `case`")
            from petclick.io.casefiles import load_prediction_case

            case = load_prediction_case(spec["ct"], spec["pet"])
        if fingerprint(case) != state["case"]:
            raise InputError(path, "the case differs from the one this session was saved with")
        opts = dict(mode=None if state["mode"] in ("predictor", "mixed") else state["mode"], postprocess=state.get("postprocess"),
                    tracer=state.get("tracer"), click_policy=state.get("click_policy"), budget=state.get("budget"),
                    checkpoints=state.get("checkpoints"), tta_axes=state.get("tta_axes"), spec=spec)
        opts.update(kwargs)
        s = cls(predictor, case, **opts)
        s._history = [_clicks_of(c) for c in state["history"]]
        if (folder / "engine.pt").is_file():
            s._load_engines(torch.load(folder / "engine.pt", map_location="cpu", weights_only=True))
        lc = state.get("last_clicks")
        if lc is not None and (folder / "mask.nii.gz").is_file() and (folder / "prob.npy").is_file():
            clicks = _clicks_of(lc)
            mask = load_volume(folder / "mask.nii.gz", dtype=np.uint8).array
            prob = np.load(folder / "prob.npy")
            s._last = Prediction(mask, prob, None, len(s._history) - 1, clicks, False, 0, 0, 0.0)
            s._last_clicks = clicks
        return s

    def _load_engines(self, state: Mapping[str, Any]) -> None:
        """Continue every engine from a saved `engine.pt` (one state, or one per model set of a choice by step)."""
        by_step = state.get("by_step") if isinstance(state, Mapping) else None
        if (self.routed is None) != (by_step is None) or (by_step is not None and len(by_step) != len(self._members)):
            raise InputError("session state", "saved state belongs to another model set")
        for n, st in enumerate(by_step if by_step is not None else [state]):
            engine = self._engine(n) if st is not None else None
            if st is not None and engine is None:
                raise InputError("session state", "saved state belongs to another model set")
            if engine is not None:
                engine.load_state_dict(st)


def _predictor_from_spec(spec: Mapping[str, Any]) -> Any:
    """The predictor a saved or opened session's model spec names (the one loader, cached per process)."""
    extra = {"tta_flip_axes": tuple(spec["tta_flip_axes"])} if spec.get("tta_flip_axes") else {}
    return get_predictor(spec["models"], device=spec.get("device", "cpu"), algo_weights=spec.get("algo_weights"),
                         cached=True, **extra)


def _clicks_of(d: Mapping[str, Any]) -> Clicks:
    return Clicks([tuple(p) for p in d["tumor"]], [tuple(p) for p in d["background"]])


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.asarray(array, np.float32))


def check_first(first: str | None) -> str:
    """A valid step-0 choice (None: ensemble); anything else raises InputError."""
    value = "ensemble" if first is None else str(first).strip().lower()
    if value not in FIRST_CHOICES:
        raise InputError("first", f"unknown step-0 choice {first!r}; use one of {', '.join(FIRST_CHOICES)}")
    return value


def default_mode(predictor: EnsemblePredictor) -> str:
    """The incremental mode the checkpoints ask for (`infer.incremental`), else exact."""
    modes = {str(predictor.info[p]["infer"].get("incremental") or "exact") for p in predictor.checkpoints}
    return modes.pop() if len(modes) == 1 else "exact"


def default_local_settings(predictor: EnsemblePredictor) -> LocalSettings:
    """Local mode's settings the checkpoints ask for: `infer.local_window` (largest, else 1),
    `infer.local_update` (replace unless every checkpoint that names one says delta) and
    `infer.local_max_grow` (largest, else 3)."""
    infos = [predictor.info[p]["infer"] for p in predictor.checkpoints]
    windows = [float(i["local_window"]) for i in infos if i.get("local_window") is not None]
    updates = {str(i["local_update"]).strip().lower() for i in infos if i.get("local_update") is not None}
    grows = [int(i["local_max_grow"]) for i in infos if i.get("local_max_grow") is not None]
    return LocalSettings(window=max(windows, default=1.0), update=updates.pop() if len(updates) == 1 else "replace",
                         max_grow=max(grows, default=LocalSettings.max_grow))


def default_cache_mb(predictor: EnsemblePredictor) -> float | str:
    """The tile-cache limit: the smallest number the checkpoints ask for (`infer.tile_cache_mb`), else
    PETCLICK_TILE_CACHE_MB, else `auto` (one pass of every checkpoint's tiles, if half the device's
    memory holds it, else refused: petclick.runtime.memory)."""
    values = [predictor.info[p]["infer"].get("tile_cache_mb") for p in predictor.checkpoints]
    values = [float(v) for v in values if v is not None and v != "auto"]
    if values:
        return min(values)
    return float(os.environ["PETCLICK_TILE_CACHE_MB"]) if os.environ.get("PETCLICK_TILE_CACHE_MB") else "auto"
