"""A training curriculum of autoPET V corrective scribbles on a patch (`clicks.curriculum.kind: scribbles`).

Training patches have no previous prediction, so the curriculum makes a stand-in for one and
corrects it the way the challenge's loop corrects a model:

1. Initial prediction: the patch's high-uptake non-lesion regions (the background-click regions
   of the click curricula: PET above the 99.75th percentile of non-lesion PET, of the patch or of
   the whole case) plus each lesion component with probability 1 - `miss` (missed otherwise).
2. A number of steps n drawn from `steps` over 0..max_steps (a count preset or weights, as the
   click curricula's `count`), a stroke strategy per patch drawn from `strategies`.
3. n times: the official step rule (petclick.clicks.scribbles.scribble_step, exact labelling)
   on the current prediction, with a stroke seed drawn from the patch's generator (the official
   loop seeds every stroke with 42; training wants varied strokes); the stroke's voxels are
   appended to their kind, and the stand-in model then fixes the 26-connected error component
   the stroke lies on (a missed lesion part added, a false-positive region removed), so the next
   step corrects the next-largest error, as a model that follows its scribbles would. Stops
   early when nothing is left to correct or the next stroke would pass `max_points` voxels of a
   kind (the packed array's capacity in `data.batch_transforms`).

Config: the `clicks.curriculum` mapping with `kind: scribbles`; `background` is shared with the
click curriculum (patch | case, as there; the presets' `case` needs BackgroundThresholdd), the
scribble options sit under `scribbles` (missing keys from DEFAULT_CONFIG), and the click-only
keys (count, paired, samplers, interior_power: the presets' values merge in) do not apply:

    curriculum:
      kind: scribbles
      background: case
      scribbles:
        steps: uniform       # uniform | log | full | [w0, ..., w_max_steps]
        max_steps: 5         # the challenge's 5 corrective steps
        strategies: {centerline: 1, random: 1, boundary: 1}
        miss: 0.5            # probability that a lesion component is missing from the initial prediction
        max_points: 1024     # scribble voxels per kind at most

The output is the click curricula's: {"tumor": (N, 3), "background": (M, 3)} float64 voxel
coordinates of the patch, every scribble voxel a point, so every click encoding applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import cc3d
import numpy as np

from petclick.clicks.click_curriculum import BACKGROUNDS, count_distribution, high_uptake_mask, mix_weights
from petclick.clicks.click_curriculum import CONFIG_KEYS as CLICK_KEYS
from petclick.clicks.scribbles import scribble_step
from petclick.clicks.strokes import STRATEGIES
from petclick.core.errors import InputError

SOURCE = "clicks.curriculum.scribbles"
#: Keys of the `scribbles` sub-mapping.
CONFIG_KEYS = ("steps", "max_steps", "strategies", "miss", "max_points")
#: Keys of the curriculum mapping itself under `kind: scribbles` (the click-only ones are not used).
CURRICULUM_KEYS = ("kind", "background", "scribbles", *CLICK_KEYS)
DEFAULT_CONFIG: dict[str, Any] = {"steps": "uniform", "max_steps": 5,
                                  "strategies": {"centerline": 1.0, "random": 1.0, "boundary": 1.0},
                                  "miss": 0.5, "max_points": 1024}


def _int_at_least(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or float(value) != int(value) \
            or int(value) < lo:
        raise InputError(SOURCE, f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _fix_component(error: np.ndarray, stroke: list) -> np.ndarray:
    """The 26-connected components of `error` that hold a stroke voxel."""
    labels = cc3d.connected_components(error.view(np.uint8), connectivity=26)
    ids = np.unique([labels[p] for p in stroke])
    return np.isin(labels, ids[ids > 0])


@dataclass
class ScribbleCurriculum:
    """Scribble steps on a stand-in prediction of a patch (module docstring)."""

    probs: np.ndarray = field(default_factory=lambda: count_distribution("uniform", 5))
    strategies: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CONFIG["strategies"]))
    miss: float = 0.5
    background: str = "patch"
    max_points: int = 1024

    @property
    def max_steps(self) -> int:
        return len(self.probs) - 1

    @property
    def capacity(self) -> int:
        """Points of a kind a patch can get (the packed click array's slots)."""
        return self.max_points

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None, max_clicks: int | None = None) -> "ScribbleCurriculum":
        """Build from a `clicks.curriculum` mapping (module docstring); bad values raise InputError
        naming the key. `max_clicks` (the click budget) does not apply to scribbles."""
        config = dict(config or {})
        unknown = sorted(set(config) - set(CURRICULUM_KEYS))
        if unknown:
            raise InputError("clicks.curriculum", f"unknown key(s) {unknown} under kind scribbles; allowed: "
                                                  f"{list(CURRICULUM_KEYS)}")
        own = config.get("scribbles") or {}
        if not isinstance(own, Mapping):
            raise InputError(SOURCE, f"must be a mapping of {list(CONFIG_KEYS)}, got {own!r}")
        unknown = sorted(set(own) - set(CONFIG_KEYS))
        if unknown:
            raise InputError(SOURCE, f"unknown key(s) {unknown}; allowed: {list(CONFIG_KEYS)}")
        cfg = {**DEFAULT_CONFIG, **own, "background": config.get("background", "patch")}
        max_steps = _int_at_least("max_steps", cfg["max_steps"], 0)
        try:
            miss = float(cfg["miss"])
        except (TypeError, ValueError):
            miss = float("nan")
        if not 0.0 <= miss <= 1.0:
            raise InputError(SOURCE, f"miss must be a probability in [0, 1], got {cfg['miss']!r}")
        if cfg["background"] not in BACKGROUNDS:
            raise InputError(SOURCE, f"background must be one of {list(BACKGROUNDS)}, got {cfg['background']!r}")
        strategies = mix_weights(cfg["strategies"], sorted(STRATEGIES), "stroke strategy", "{centerline: 1, random: 1}",
                                 SOURCE)
        return cls(count_distribution(cfg["steps"], max_steps), strategies, miss, str(cfg["background"]),
                   _int_at_least("max_points", cfg["max_points"], 1))

    def initial_prediction(self, lesion: np.ndarray, pet: np.ndarray, rng: np.random.Generator,
                           threshold: float | None = None) -> np.ndarray:
        """High-uptake non-lesion regions plus the lesion components that are not missed."""
        pred = high_uptake_mask(pet, lesion, threshold)
        labels, n = cc3d.connected_components(lesion.view(np.uint8), connectivity=26, return_N=True)
        kept = np.flatnonzero(rng.random(n) >= self.miss) + 1
        return pred | np.isin(labels, kept)

    def sample_clicks(self, label, pet, rng: np.random.Generator, counts: Any = None,
                      threshold: float | None = None) -> dict[str, np.ndarray]:
        """{"tumor": (N, 3), "background": (M, 3)} float64 scribble voxels of one 3D patch (label > 0.5 = lesion)."""
        label, pet = np.asarray(label), np.asarray(pet, dtype=np.float32)
        if label.shape != pet.shape or label.ndim != 3:
            raise ValueError(f"label {label.shape} and PET {pet.shape} must be 3D arrays of one shape")
        lesion = np.ascontiguousarray(label > 0.5 if label.dtype != bool else label)
        n_steps = int(rng.choice(len(self.probs), p=self.probs))
        names = list(self.strategies)
        strategy = names[int(rng.choice(len(names), p=[self.strategies[k] for k in names]))]
        out: dict[str, list] = {"tumor": [], "background": []}
        if n_steps and lesion.any():
            pred = self.initial_prediction(lesion, pet, rng, threshold)
            for _ in range(n_steps):
                step = scribble_step(pred, lesion, strategy, seed=int(rng.integers(2 ** 31)), labelling="exact")
                if step.kind is None or len(out[step.kind]) + len(step.points) > self.max_points:
                    break
                out[step.kind].extend(step.points)
                if step.kind == "tumor":
                    pred = pred | _fix_component(lesion & ~pred, step.points)
                else:
                    pred = pred & ~_fix_component(pred & ~lesion, step.points)
        return {k: np.asarray(v, dtype=np.float64).reshape(-1, 3) for k, v in out.items()}
