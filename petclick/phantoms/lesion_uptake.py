"""What a lesion looks like inside its outline: peak SUV, the uptake pattern, and its CT values.

Calibrated against the autoPET training set's lesion-voxel statistics (the public nnU-Net
fingerprint: SUV p0.5 / median / mean / p99.5 = 1.04 / 4.68 / 7.06 / 51.2; HU p0.5 / median /
mean / p99.5 = -832 / 71 / 108 / 1128; `petclick.phantoms.realism` measures a cohort the same way).
Three facts of real lesions drive the model:

- Peaks are log-normal with a long hot tail (PSMA more than FDG), not uniform in a range.
- Uptake is not uniform inside the outline: it falls off towards the edge, is patchy, may spare a
  necrotic core or concentrate in a rim, and the outline often reaches into a margin that is
  barely above its surroundings (the CT-visible but non-avid part). Many labelled voxels therefore
  sit at SUV 1-2.5, where no fixed-fraction iso-contour of the peak reaches: the extent must be
  read from the CT and the context, not from a threshold.
- On CT, nodes enhance (contrast-enhanced scans), liver lesions are hypodense, lung lesions have a
  solid core inside a ground-glass or air-containing margin that the outline includes, PSMA bone
  lesions are sclerotic.
"""

from __future__ import annotations

import numpy as np

from petclick.phantoms.fields import smooth_noise

#: Peak SUV (before the PSF blur) per tracer: log-normal (median, log s.d.), clipped to [lo, hi].
PEAK_SUV: dict[str, dict[str, float]] = {
    "fdg": {"median": 9.0, "log_sd": 0.6, "lo": 2.0, "hi": 60.0},
    "psma": {"median": 13.0, "log_sd": 0.95, "lo": 2.5, "hi": 200.0},
}
#: Uptake patterns inside the outline and their probabilities per tracer (the large-lesion ones are
#: only drawn for lesions of at least NECROSIS_MIN_RADIUS_MM; smaller lesions fall back to "solid").
PATTERNS: dict[str, dict[str, float]] = {
    "fdg": {"solid": 0.35, "patchy": 0.25, "cool_margin": 0.2, "rim": 0.08, "necrotic": 0.12},
    "psma": {"solid": 0.45, "patchy": 0.3, "cool_margin": 0.15, "rim": 0.05, "necrotic": 0.05},
}
LARGE_PATTERNS = ("rim", "necrotic")
NECROSIS_MIN_RADIUS_MM = 12.0
#: Every lesion voxel keeps at least this multiple of its host tissue's uptake (a lesion is never colder
#: than where it grows) and, apart from a necrotic core, at least MIN_LESION_SUV.
HOST_FLOOR = 1.15
MIN_LESION_SUV = 1.4


def draw_peak_suv(rng: np.random.Generator, tracer: str, host_suv: float) -> float:
    """A lesion's peak SUV: log-normal per tracer, and clearly above its host tissue."""
    p = PEAK_SUV[tracer]
    peak = float(np.exp(np.log(p["median"]) + p["log_sd"] * rng.standard_normal()))
    lo = max(p["lo"], 1.6 * host_suv)
    return float(np.clip(peak, lo, max(lo, p["hi"])))


def draw_pattern(rng: np.random.Generator, tracer: str, radius_mm: float) -> str:
    """The uptake pattern of a lesion (see PATTERNS)."""
    table = PATTERNS[tracer]
    names, probs = list(table), np.array(list(table.values()))
    name = str(rng.choice(names, p=probs / probs.sum()))
    if name in LARGE_PATTERNS and radius_mm < NECROSIS_MIN_RADIUS_MM:
        return "solid"
    return name


def uptake_values(rng: np.random.Generator, pattern: str, peak: float, host: float, q: np.ndarray,
                  mask: np.ndarray) -> np.ndarray:
    """SUV of every voxel of a lesion's box (only `mask` voxels are used).

    q: the normalised squared radius of the lesion's main ellipsoid (0 at the centre, 1 at its
    outline; larger in lobes that stick out). The profile falls from the peak at the centre to
    `edge` x peak at the outline, modulated by a smooth field; the pattern then reshapes it."""
    r = np.sqrt(np.minimum(q, 4.0)).astype(np.float32)
    edge = float(rng.uniform(0.4, 0.8))
    profile = 1.0 - (1.0 - edge) * np.minimum(r, 1.3)
    texture = smooth_noise(rng, mask.shape, 3 if pattern != "patchy" else 4)
    amplitude = {"patchy": rng.uniform(0.3, 0.45)}.get(pattern, rng.uniform(0.08, 0.18))
    values = peak * profile * (1.0 + np.float32(amplitude) * texture)
    floor = max(HOST_FLOOR * host, MIN_LESION_SUV)
    if pattern == "cool_margin":  # the outer shell of the outline barely above the host tissue
        inner = float(rng.uniform(0.55, 0.8))
        shell = r > inner
        margin = np.float32(floor * rng.uniform(1.1, 1.8))
        values = np.where(shell, np.minimum(values, margin * (1.0 + 0.15 * texture)), values)
    elif pattern == "rim":          # a hot rim around a cool centre
        cool = float(rng.uniform(0.2, 0.45))
        centre = np.clip((0.75 - r) / 0.35, 0.0, 1.0)
        values = values * (1.0 - (1.0 - cool) * centre) / np.float32(edge + 0.3)
    elif pattern == "necrotic":     # a core at about the host's uptake (at least that of fluid, about 1)
        core = float(rng.uniform(0.3, 0.6))
        core_suv = max(host * rng.uniform(0.9, 1.4), rng.uniform(0.9, 1.4))  # about the host, or water-like
        values = np.where(r < core, np.float32(core_suv), values)
        floor = min(floor, core_suv)
    return np.maximum(values, np.float32(floor)).astype(np.float32)


def lesion_hu(rng: np.random.Generator, site: str, tracer: str, host_hu: float, lung_hu: float, q: np.ndarray,
              mask: np.ndarray) -> tuple[np.ndarray, str]:
    """HU of every voxel of a lesion's box (only `mask` voxels are used) and a short description."""
    shape = mask.shape
    texture = smooth_noise(rng, shape, 2)
    if site == "liver":   # hypodense against the liver
        hu = host_hu - rng.uniform(15.0, 35.0)
        return np.float32(hu + 6.0 * texture) * np.ones(shape, np.float32), "hypodense"
    if site == "bone":
        if tracer == "psma":  # sclerotic
            hu = rng.uniform(650.0, 1450.0)
            return np.float32(hu) * (1.0 + np.float32(0.12) * texture), "sclerotic"
        hu = rng.uniform(60.0, 260.0)  # lytic or mixed (FDG)
        return np.float32(hu) + np.float32(40.0) * texture, "lytic"
    solid = np.float32(rng.uniform(40.0, 115.0))  # nodes and soft-tissue lesions; enhancing with contrast
    values = solid + np.float32(8.0) * texture
    if site == "lung":    # a solid core inside a margin that reaches into aerated lung
        r = np.sqrt(np.minimum(q, 4.0))
        core = float(rng.uniform(0.45, 0.8))
        ground_glass = np.clip((r - core) / max(1e-3, 1.0 - core), 0.0, 1.0) ** 0.7
        values = values + (np.float32(lung_hu) - values) * ground_glass.astype(np.float32)
        return values.astype(np.float32), "solid core, ground-glass margin"
    return values.astype(np.float32), "soft tissue"
