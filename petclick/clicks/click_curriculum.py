"""The click curriculum (`clicks.curriculum.kind: clicks`, the default): how many clicks each
training patch gets, and where. Also the pieces the scribble curriculum shares with it: count
distributions, weighted mixes and the high-uptake background regions.

A click curriculum is plain config (a YAML mapping), e.g.

    count: log            # uniform | log | full | [w0, ..., w10] (explicit weights, normalised)
    paired: false         # true: k tumour and k background clicks (as in the protocol); false: drawn independently
    samplers: {official: 0.8, interior: 0.2}   # per-click mix of location samplers (weights, normalised)
    interior_power: 2.0   # interior density exponent: voxel weight = EDT ** power
    background: patch     # background regions: PET > p99.75 of the patch's non-lesion PET (`patch`), or of
                          # the whole case's (`case`, the official rule; needs BackgroundThresholdd before cropping)

Counts are drawn from a distribution over 0..max_clicks (10). Location samplers:
- `official`: the challenge's centre-then-boundary rule (petclick.clicks.simulate) on the patch:
  tumour clicks on the patch label's components, background clicks on the components of
  (patch PET > its 99.75th percentile outside lesions);
- `interior`: a component drawn with probability proportional to its volume, then a voxel inside
  it with probability proportional to EDT ** interior_power (rising towards the core); tumour on
  the lesions, background on the same high-uptake non-lesion regions.
Every EDT is computed inside a component's bounding box only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from petclick.clicks.simulate import Components, background_threshold, clicks_for_components, exceeds
from petclick.config.presets import CLICKS, MAX_CLICKS
from petclick.core.errors import InputError

COUNT_PRESETS = ("uniform", "log", "full")
SAMPLERS = ("official", "interior")
CONFIG_KEYS = ("kind", "count", "paired", "samplers", "interior_power", "background")
BACKGROUNDS = ("patch", "case")
SOURCE = "clicks.curriculum"
#: A curriculum config's defaults: the presets' `clicks.curriculum`, plus the interior sampler's power
#: and the background rule: `patch` for a curriculum built on its own (it needs no BackgroundThresholdd);
#: a bundle config carries the presets' `case`.
DEFAULT_CONFIG: dict[str, Any] = {**copy.deepcopy(CLICKS["curriculum"]), "interior_power": 2.0, "background": "patch"}


def count_distribution(spec: str | Sequence[float], max_clicks: int = MAX_CLICKS) -> np.ndarray:
    """Probabilities p_0..p_max of drawing k clicks for a preset name or explicit weights.

    uniform: p_k equal; log: p_k proportional to reversed log(linspace(2, max + 2, max + 1)) (for
    max = 10 exactly numpy's log(linspace(2, 12, 11)) reversed: few clicks more likely); full:
    always max; a list: max + 1 non-negative weights with a positive sum, normalised.
    """
    n = int(max_clicks) + 1
    if isinstance(spec, str):
        if spec == "uniform":
            w = np.ones(n)
        elif spec == "log":
            w = np.log(np.linspace(2, max_clicks + 2, n))[::-1]
        elif spec == "full":
            w = np.zeros(n)
            w[-1] = 1.0
        else:
            raise InputError(SOURCE, f"unknown count preset {spec!r}; use one of {COUNT_PRESETS} or a list of {n} weights")
    else:
        try:
            w = np.asarray(list(spec), dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(SOURCE, f"count must be a preset name {COUNT_PRESETS} or a list of {n} numbers, got {spec!r}") from None
        if w.shape != (n,):
            raise InputError(SOURCE, f"count weights must hold {n} values (k = 0..{max_clicks}), got {w.size}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise InputError(SOURCE, f"count weights must be finite and non-negative, got {list(spec)}")
        if w.sum() <= 0:
            raise InputError(SOURCE, "count weights must not all be zero")
    return w / w.sum()


def mix_weights(spec: Mapping[str, float] | str, allowed: Sequence[str], what: str, example: str,
                source: str = SOURCE) -> dict[str, float]:
    """A YAML mix ({name: weight, ...} or one name) normalised to sum 1, in `allowed` order; unknown
    names, non-numbers, negative weights or a zero sum raise InputError naming `source` and `what`."""
    if isinstance(spec, str):
        spec = {spec: 1.0}
    if not isinstance(spec, Mapping) or not spec:
        raise InputError(source, f"{what}s must be a mapping such as {example}, got {spec!r}")
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise InputError(source, f"unknown {what}(s) {unknown}; use {list(allowed)}")
    try:
        w = {k: float(v) for k, v in spec.items()}
    except (TypeError, ValueError):
        raise InputError(source, f"{what} weights must be numbers, got {dict(spec)}") from None
    if any(not np.isfinite(v) or v < 0 for v in w.values()) or sum(w.values()) <= 0:
        raise InputError(source, f"{what} weights must be non-negative with a positive sum, got {dict(spec)}")
    total = sum(w.values())
    return {k: w[k] / total for k in allowed if k in w}


def _sampler_weights(spec: Mapping[str, float] | str) -> dict[str, float]:
    return mix_weights(spec, SAMPLERS, "sampler", "{official: 0.8, interior: 0.2}")


def interior_clicks(comps: Components, n: int, rng: np.random.Generator, power: float = 2.0) -> list[tuple[int, int, int]]:
    """n voxels inside the components: a component drawn with probability proportional to its volume, then
    a voxel of it with probability proportional to EDT ** power (the core more likely than the rim)."""
    if len(comps) == 0 or n <= 0:
        return []
    picks = rng.choice(len(comps), size=n, p=comps.sizes / comps.sizes.sum())
    points = []
    cache: dict[int, tuple[np.ndarray, tuple[int, int, int], np.ndarray, tuple[int, ...]]] = {}
    for index in picks.tolist():
        if index not in cache:
            region = comps.region(index)
            flat = np.flatnonzero(region.mask)
            weights = region.edt().ravel()[flat] ** power
            cache[index] = (flat, region.origin, np.cumsum(weights) / weights.sum(), region.mask.shape)
        flat, origin, cdf, shape = cache[index]
        chosen = flat[min(int(np.searchsorted(cdf, rng.random(), side="right")), flat.size - 1)]
        local = np.unravel_index(int(chosen), shape)
        points.append(tuple(int(o + c) for o, c in zip(origin, local)))
    return points


def high_uptake_mask(pet: np.ndarray, lesion: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Non-lesion voxels with PET above the 99.75th percentile of non-lesion PET (the official background
    regions); when clipping makes that set empty (top values tied), voxels at the threshold are taken.
    `threshold`: that percentile taken over the whole case (BackgroundThresholdd) instead of this array."""
    threshold = background_threshold(pet, lesion) if threshold is None else float(threshold)
    hot = exceeds(pet, threshold) & ~lesion
    if not hot.any() and np.isfinite(threshold):
        hot = exceeds(pet, threshold, inclusive=True) & ~lesion
    return hot


@dataclass
class ClickCurriculum:
    """A count distribution, pairing and a per-click mix of location samplers (see the module docstring)."""

    probs: np.ndarray = field(default_factory=lambda: count_distribution("log"))
    paired: bool = False
    samplers: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CONFIG["samplers"]))
    interior_power: float = 2.0
    background: str = "patch"

    @property
    def max_clicks(self) -> int:
        return len(self.probs) - 1

    @property
    def capacity(self) -> int:
        """Clicks of a kind a patch can get (the packed click array's slots)."""
        return self.max_clicks

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | "ClickCurriculum" | None = None,
                    max_clicks: int = MAX_CLICKS) -> "ClickCurriculum":
        """Build from a YAML mapping (keys count, paired, samplers, interior_power; missing keys take
        DEFAULT_CONFIG values); bad values raise InputError (a ValueError) naming the key."""
        if isinstance(config, ClickCurriculum):
            return config
        config = dict(config or {})
        if config.pop("kind", "clicks") != "clicks":
            raise InputError(SOURCE, "not a click curriculum (kind must be 'clicks'); use curriculum_from_config")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise InputError(SOURCE, f"unknown key(s) {unknown}; allowed: {list(CONFIG_KEYS)}")
        cfg = {**DEFAULT_CONFIG, **config}
        if not isinstance(cfg["paired"], (bool, np.bool_)):
            raise InputError(SOURCE, f"paired must be true or false, got {cfg['paired']!r}")
        try:
            power = float(cfg["interior_power"])
        except (TypeError, ValueError):
            power = float("nan")
        if not np.isfinite(power) or power < 0:
            raise InputError(SOURCE, f"interior_power must be a non-negative number, got {cfg['interior_power']!r}")
        if int(max_clicks) < 0:
            raise InputError(SOURCE, f"max_clicks must be >= 0, got {max_clicks}")
        if cfg["background"] not in BACKGROUNDS:
            raise InputError(SOURCE, f"background must be one of {list(BACKGROUNDS)}, got {cfg['background']!r}")
        return cls(count_distribution(cfg["count"], int(max_clicks)), bool(cfg["paired"]),
                   _sampler_weights(cfg["samplers"]), power, str(cfg["background"]))

    def sample_counts(self, rng: np.random.Generator) -> tuple[int, int]:
        """(tumour, background) click counts: one draw when paired, two independent draws otherwise."""
        k = int(rng.choice(len(self.probs), p=self.probs))
        return (k, k) if self.paired else (k, int(rng.choice(len(self.probs), p=self.probs)))

    def _place(self, comps: Components, n: int, rng: np.random.Generator) -> np.ndarray:
        """n clicks in the components, each from a sampler drawn by the mix; each sampler keeps its own order."""
        if len(comps) == 0 or n <= 0:
            return np.zeros((0, 3), np.float64)
        names = list(self.samplers)
        which = rng.choice(len(names), size=n, p=[self.samplers[k] for k in names])
        parts = []
        for s, name in enumerate(names):
            m = int(np.count_nonzero(which == s))
            place = clicks_for_components if name == "official" else (
                lambda c, k, r: interior_clicks(c, k, r, self.interior_power))
            parts.append(iter(place(comps, m, rng)))
        return np.asarray([next(parts[s]) for s in which.tolist()], dtype=np.float64).reshape(-1, 3)

    def sample_clicks(self, label, pet, rng: np.random.Generator, counts: tuple[int, int] | None = None,
                      threshold: float | None = None) -> dict[str, np.ndarray]:
        """{"tumor": (N, 3), "background": (M, 3)} float64 voxel coordinates for one 3D patch.

        label: lesion mask (> 0.5 = lesion); pet: uptake on the same grid (any monotonic scaling of
        SUV); counts: (tumour, background) or None to draw them with sample_counts. Fewer clicks
        come back when the patch has no lesion or no high-uptake background.
        """
        label, pet = np.asarray(label), np.asarray(pet, dtype=np.float32)
        if label.shape != pet.shape or label.ndim != 3:
            raise ValueError(f"label {label.shape} and PET {pet.shape} must be 3D arrays of one shape")
        n_fg, n_bg = self.sample_counts(rng) if counts is None else counts
        lesion = label > 0.5 if label.dtype != bool else label
        tumor = self._place(Components(lesion), n_fg, rng) if n_fg else np.zeros((0, 3))
        background = (self._place(Components(high_uptake_mask(pet, lesion, threshold)), n_bg, rng) if n_bg
                      else np.zeros((0, 3)))
        return {"tumor": tumor, "background": background}
