"""Lesions: count, site, size, shape and uptake drawn per case, painted inside their own box.

Sites are the lymph-node stations (neck, axilla, mediastinum, para-aortic, iliac), lungs, liver
and bone, plus nodes pressed against the kidneys, bladder, heart or liver (and the prostate bed
under PSMA), where physiological uptake hides them. Shapes are ellipsoids, lobulated ellipsoids
(radius modulated by a smooth field) and unions of ellipsoids; some FDG cases carry one bulky nodal
conglomerate of 100-400 mL (lymphoma), made of many merged nodes. A candidate is kept only if it
lies mostly in the tissue its site allows, forms one 18-connected component and stays at least one
voxel away from every other lesion, so each lesion of the label is exactly one lesion of the list.
Uptake and CT values inside the outline: petclick.phantoms.lesion_uptake.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cc3d
import numpy as np
from scipy.ndimage import binary_dilation

from petclick.phantoms.anatomy import Anatomy
from petclick.phantoms.fields import smooth_noise
from petclick.phantoms.grid import Grid
from petclick.phantoms.labels import BONE_LABELS, ORGAN_LABELS as L
from petclick.phantoms.shapes import Ellipsoid, rotation
from petclick.phantoms.lesion_uptake import draw_pattern, draw_peak_suv, lesion_hu, uptake_values

NODE_TISSUE = (L["soft_tissue"], L["fat"])
SITE_WEIGHTS = {
    "fdg": {"neck": .10, "axilla": .08, "mediastinum": .12, "para_aortic": .09, "iliac": .07, "lung": .15,
            "liver": .12, "bone": .12, "near_kidney": .05, "near_bladder": .05, "near_heart": .05, "near_liver": .05},
    "psma": {"neck": .04, "axilla": .03, "mediastinum": .06, "para_aortic": .13, "iliac": .18, "lung": .05,
             "liver": .04, "bone": .25, "near_kidney": .05, "near_bladder": .07, "near_heart": .03, "near_liver": .02,
             "prostate": .07},
}
ADJACENT_SITES = ("near_kidney", "near_bladder", "near_heart", "near_liver")
RADIUS_MM = (3.0, 30.0)
MIN_RADIUS_VOX = 1.2
MIN_VOXELS = 5
MAX_LESIONS = 20
LOBE_MAX = 1.45
#: Bulky nodal disease (FDG, lymphoma): the probability that a lesion case carries one conglomerate,
#: its volume range (mL), the stations that hold one and the tissues it may fill.
BULKY_P = 0.25
BULKY_ML = (100.0, 400.0)
BULKY_SITES = ("mediastinum", "para_aortic", "iliac", "neck", "axilla")
BULKY_FILL = 0.75   # the part of the nodes' union that lands in tissue a node may fill (measured)


@dataclass
class Lesion:
    """One painted lesion, as recorded in the case metadata."""

    site: str
    shape: str
    radius_mm: float          # geometric-mean semi-axis after clamping to the voxel size
    suv: float                # peak SUV before blur
    necrotic: bool
    uptake: str               # uptake pattern inside the outline (lesion_uptake.PATTERNS)
    ct: str                   # what the lesion looks like on CT
    center_mm: list[float]    # body frame (u, v, w)
    center_voxel: list[int]   # centroid voxel (i, j, k)
    voxels: int
    volume_ml: float

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform_in_ball(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v) * rng.uniform() ** (1 / 3)


class SiteSampler:
    """Candidate lesion centres (body-frame mm) and the tissues a lesion at each site may occupy."""

    def __init__(self, an: Anatomy, rng: np.random.Generator):
        self.an, self.rng = an, rng

    def __call__(self, site: str, r: float) -> tuple[np.ndarray, tuple[int, ...]]:
        return getattr(self, site)(r)

    def _side(self) -> int:
        return int(self.rng.choice((-1, 1)))

    def neck(self, r):
        u = self._side() * self.rng.uniform(22, 45)
        return self.an.p(u, self.rng.uniform(-20, 30), self.rng.uniform(215, 280)), NODE_TISSUE

    def axilla(self, r):
        u = self._side() * self.rng.uniform(112, 142)
        return self.an.p(u, self.rng.uniform(-20, 40), self.rng.uniform(318, 400)), NODE_TISSUE

    def mediastinum(self, r):
        return self.an.p(self.rng.uniform(-25, 30), self.rng.uniform(-45, 25), self.rng.uniform(340, 455)), NODE_TISSUE

    def _beside(self, segment, r, lateral_mm):
        t = self.rng.uniform(0.1, 0.9)
        point = segment.p0 + t * (segment.p1 - segment.p0)
        off = self._side() * (segment.radius + r + self.rng.uniform(*lateral_mm))
        return point + np.array([off, self.rng.uniform(-0.5, 0.5) * r, 0.0])

    def para_aortic(self, r):
        return self._beside(self.an.organs["aorta"][3], r, (1.0, 8.0)), NODE_TISSUE

    def iliac(self, r):
        seg = self.an.organs["iliac_arteries"][int(self.rng.integers(len(self.an.organs["iliac_arteries"])))]
        return self._beside(seg, r, (1.0, 6.0)), NODE_TISSUE

    def lung(self, r):
        lung = self.an.organs["lung"][int(self.rng.integers(2))]
        w = self.rng.uniform(lung.w[0] + 0.15 * (lung.w[-1] - lung.w[0]), lung.w[-1] - 0.2 * (lung.w[-1] - lung.w[0]))
        cu, cv, a, ba, bp = (float(x[0]) for x in lung.profile(np.array([w], np.float32)))
        ang, rad = self.rng.uniform(0, 2 * np.pi), 0.8 * np.sqrt(self.rng.uniform())
        du, dv = rad * np.cos(ang) * a, rad * np.sin(ang) * (ba if np.sin(ang) < 0 else bp)
        return np.array([cu + du, cv + dv, w]), (L["lung"], L["soft_tissue"])

    def liver(self, r):
        liv = self.an.organs["liver"][0]
        rot = np.eye(3) if liv.rot is None else liv.rot
        return liv.center + rot @ (liv.axes * 0.7 * _uniform_in_ball(self.rng)), (L["liver"],)

    def bone(self, r):
        choice = self.rng.uniform()
        if choice < 0.55:   # vertebral body
            spine = self.an.organs["spine"][0]
            w = self.rng.uniform(spine.w[0] + 20, spine.w[-1] - 10)
            cu, cv, *_ = (float(x[0]) for x in spine.profile(np.array([w], np.float32)))
            centre = np.array([cu, cv, w])
        elif choice < 0.8:  # iliac wing
            wing = self.an.organs["pelvis_bone"][4 * int(self.rng.integers(2))]
            centre = wing.center + (wing.rot @ (wing.axes * np.array([0, 0.5, 0.5]) * _uniform_in_ball(self.rng)))
        else:               # femoral head or proximal shaft
            fem = self.an.organs["femur"]
            side = 3 * int(self.rng.integers(2))
            if self.rng.uniform() < 0.5:
                centre = fem[side].center.copy()
            else:
                shaft = fem[side + 2]
                centre = shaft.p0 + self.rng.uniform(0.05, 0.3) * (shaft.p1 - shaft.p0)
        return centre, BONE_LABELS

    def _adjacent(self, organ: Ellipsoid, r, direction):
        """A centre at distance r from the organ's surface plus 0-3 mm: the lesion touches or abuts it."""
        d = direction / np.linalg.norm(direction)
        return organ.center + d * (organ.surface_distance(d) + r + self.rng.uniform(0.0, 3.0))

    def near_kidney(self, r):
        kid = self.an.organs["kidneys"][int(self.rng.integers(2))]
        side = np.sign(kid.center[0] - self.an.offset[0])
        ang = self.rng.uniform(-0.6 * np.pi, 0.6 * np.pi)  # medial, anterior or lateral, not posterior
        d = np.array([-side * np.cos(ang), -abs(np.sin(ang)) if abs(ang) > 0.3 else np.sin(ang), self.rng.uniform(-0.3, 0.3)])
        return self._adjacent(kid, r, d), NODE_TISSUE

    def near_bladder(self, r):
        bl = self.an.organs["bladder"][0]
        ang = self.rng.uniform(0, np.pi)  # lateral or anterior half
        d = np.array([np.cos(ang), -np.sin(ang), self.rng.uniform(-0.6, 0.2)])
        return self._adjacent(bl, r, d), NODE_TISSUE

    def near_heart(self, r):
        heart = self.an.organs["heart"][0]
        ang = self.rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(ang), np.sin(ang), self.rng.uniform(-0.4, 0.4)])
        return self._adjacent(heart, r, d), NODE_TISSUE + (L["lung"],)

    def near_liver(self, r):
        liv = self.an.organs["liver"][0]
        ang = self.rng.uniform(0.25 * np.pi, 1.25 * np.pi)  # medial/anterior/inferior faces (hilum, gallbladder bed)
        d = np.array([np.cos(ang), -abs(np.sin(ang)), self.rng.uniform(-0.2, 0.8)])
        return self._adjacent(liv, r, d), NODE_TISSUE

    def prostate(self, r):
        pr = self.an.organs["prostate"][0]
        return pr.center + pr.axes * 0.5 * _uniform_in_ball(self.rng), NODE_TISSUE


def _lesion_mask(rng, grid: Grid, centre, axes, rot, kind: str):
    """(slices, mask, q of the main ellipsoid) of one lesion shape, in a box one voxel larger than the shape."""
    main = Ellipsoid(centre, axes, rot)
    parts = []
    if kind == "multi":
        main = Ellipsoid(centre, axes * 0.8, rot)
        for _ in range(int(rng.integers(2, 4))):
            off = rot @ (axes * 0.55 * _uniform_in_ball(rng))
            sub_axes = np.maximum(axes * rng.uniform(0.4, 0.7, 3), MIN_RADIUS_VOX * np.asarray(grid.spacing))
            parts.append(Ellipsoid(centre + off, sub_axes, rotation(rng)))
    reach = LOBE_MAX if kind == "lobulated" else 1.0
    lo, hi = main.scaled(reach).bounds()
    for p in parts:
        plo, phi = p.bounds()
        lo, hi = np.minimum(lo, plo), np.maximum(hi, phi)
    sl = grid.slices(lo, hi, margin_vox=1)
    if sl is None:
        return None, None, None
    q = main.q(grid, sl)
    if kind == "lobulated":   # radius modulated by a smooth field, within [0.55, LOBE_MAX] of the ellipsoid's
        mod = np.clip(1.0 + 0.28 * smooth_noise(rng, q.shape, 3), 0.55, LOBE_MAX)
        mask = q <= mod * mod
    else:
        mask = q <= 1.0
    for p in parts:
        mask |= p.q(grid, sl) <= 1.0
    return sl, mask, q


def place_lesions(rng: np.random.Generator, an: Anatomy, grid: Grid, organs: np.ndarray, label: np.ndarray,
                  pet: np.ndarray, ct: np.ndarray, suv_lut: np.ndarray, hu_lut: np.ndarray, tracer: str,
                  n_lesions: int) -> list[Lesion]:
    """Paint up to `n_lesions` lesions into label (0/1), pet (SUV) and ct (HU); return what was painted.

    At least one lesion is placed when n_lesions >= 1 (a liver lesion as the last resort). An FDG
    case carries a bulky conglomerate with probability BULKY_P; it is placed first, while there is room."""
    sampler = SiteSampler(an, rng)
    weights = SITE_WEIGHTS[tracer]
    sites, probs = list(weights), np.array(list(weights.values()))
    probs = probs / probs.sum()
    painter = _Painter(rng, grid, organs, label, pet, ct, suv_lut, hu_lut, tracer)
    lesions: list[Lesion] = []
    if tracer == "fdg" and n_lesions and rng.uniform() < BULKY_P:
        for _ in range(12):
            les = _try_bulky(rng, sampler, painter)
            if les is not None:
                lesions.append(les)
                break
    for n in range(len(lesions), n_lesions):
        forced_adjacent = n == 0 and rng.uniform() < 0.5
        for attempt in range(30):
            if attempt == 29 and not lesions and n == n_lesions - 1:
                site = "liver"
            elif forced_adjacent and attempt < 15:
                site = str(rng.choice([s for s in ADJACENT_SITES if s in weights]))
            else:
                site = str(rng.choice(sites, p=probs))
            les = _try_lesion(rng, sampler, site, painter)
            if les is not None:
                lesions.append(les)
                break
    return lesions


class _Painter:
    """Writes one accepted lesion into the label, PET and CT arrays of a case."""

    def __init__(self, rng, grid: Grid, organs, label, pet, ct, suv_lut, hu_lut, tracer: str):
        self.rng, self.grid, self.organs, self.label, self.pet, self.ct = rng, grid, organs, label, pet, ct
        self.suv_lut, self.hu_lut, self.tracer = suv_lut, hu_lut, tracer
        self.sp = np.asarray(grid.spacing)
        self.vox_ml = float(np.prod(self.sp)) / 1000.0

    def accept(self, sl, mask: np.ndarray, allowed, min_fraction: float) -> np.ndarray | None:
        """The largest 18-connected part of `mask` inside the allowed tissues, or None when it is too small,
        keeps less than `min_fraction` of the shape, or comes within one voxel of another lesion."""
        full = int(mask.sum())
        tissue = self.organs[sl]
        mask = mask & np.isin(tissue, allowed)
        if not mask.any():
            return None
        cc = cc3d.connected_components(mask, connectivity=18)
        counts = np.bincount(cc.ravel())
        counts[0] = 0
        keep = int(counts.argmax())
        kept = int(counts[keep])
        if kept < MIN_VOXELS or kept < min_fraction * full:
            return None
        mask = cc == keep
        if np.any(binary_dilation(mask, structure=np.ones((3, 3, 3), bool)) & (self.label[sl] > 0)):
            return None
        return mask

    def paint(self, site: str, shape: str, sl, mask: np.ndarray, q: np.ndarray, r_eff: float, centre) -> Lesion:
        rng, tracer = self.rng, self.tracer
        tissue = self.organs[sl]
        host_label = int(np.bincount(tissue[mask], minlength=len(self.suv_lut)).argmax())
        host = float(self.suv_lut[host_label])
        peak = draw_peak_suv(rng, tracer, host)
        pattern = draw_pattern(rng, tracer, r_eff)
        values = uptake_values(rng, pattern, peak, host, q, mask)
        self.pet[sl][mask] = values[mask]
        hu, ct_kind = lesion_hu(rng, site, tracer, float(self.hu_lut[host_label]), float(self.hu_lut[L["lung"]]), q, mask)
        self.ct[sl][mask] = hu[mask]
        self.label[sl][mask] = 1
        idx = np.argwhere(mask).mean(axis=0) + np.array([s.start for s in sl])
        kept = int(mask.sum())
        return Lesion(site=site, shape=shape, radius_mm=round(r_eff, 2), suv=round(peak, 3),
                      necrotic=pattern == "necrotic", uptake=pattern, ct=ct_kind,
                      center_mm=[round(float(c), 2) for c in centre], center_voxel=[int(round(c)) for c in idx],
                      voxels=kept, volume_ml=round(kept * self.vox_ml, 4))


def _try_lesion(rng, sampler, site, painter: _Painter):
    sp = painter.sp
    r = float(np.exp(rng.uniform(*np.log(RADIUS_MM))))
    if site == "bone":
        r = min(r, 16.0)
    elif site in ("neck", "axilla", "prostate"):
        r = min(r, 22.0)
    stretch = rng.uniform(0.7, 1.3, 3)
    axes = np.maximum(r * stretch / np.prod(stretch) ** (1 / 3), MIN_RADIUS_VOX * sp)
    rot = rotation(rng)
    kind = str(rng.choice(["ellipsoid", "lobulated", "multi"], p=[0.5, 0.3, 0.2]))
    centre, allowed = sampler(site, float(np.prod(axes) ** (1 / 3)))
    sl, mask, q = _lesion_mask(rng, painter.grid, centre, axes, rot, kind)
    if sl is None:
        return None
    mask = painter.accept(sl, mask, allowed, 0.6)
    if mask is None:
        return None
    return painter.paint(site, kind, sl, mask, q, float(np.prod(axes) ** (1 / 3)), centre)


def _try_bulky(rng, sampler, painter: _Painter):
    """One bulky conglomerate: 6-14 merged nodes of 10-30 mm radius around a nodal station, filling
    the soft tissue and fat there (it wraps around the organs it meets), of BULKY_ML volume."""
    sp, grid = painter.sp, painter.grid
    target_ml = float(np.exp(rng.uniform(*np.log(BULKY_ML))))
    r_eq = (3.0 * target_ml / BULKY_FILL * 1000.0 / (4.0 * np.pi)) ** (1 / 3)
    site = str(rng.choice(BULKY_SITES))
    centre, allowed = sampler(site, 0.6 * r_eq)
    parts = []
    for _ in range(int(rng.integers(6, 15))):
        off = _uniform_in_ball(rng) * 0.75 * r_eq * np.array([1.0, 0.8, 1.3])
        ax = np.maximum(r_eq * rng.uniform(0.35, 0.6, 3), MIN_RADIUS_VOX * sp)
        parts.append(Ellipsoid(centre + off, ax, rotation(rng)))
    lo = np.min([p.bounds()[0] for p in parts], axis=0)
    hi = np.max([p.bounds()[1] for p in parts], axis=0)
    sl = grid.slices(lo, hi, margin_vox=1)
    if sl is None:
        return None
    qs = np.stack([p.q(grid, sl) for p in parts])
    mask = (qs <= 1.0).any(axis=0)
    mask = painter.accept(sl, mask, allowed + (L["lung"],) if site == "mediastinum" else allowed, 0.4)
    if mask is None or mask.sum() * painter.vox_ml < 0.5 * BULKY_ML[0]:
        return None
    # the uptake profile follows the nearest node: q of the conglomerate = the smallest q of its parts,
    # scaled so that the whole mass reads as one lesion with a cooler periphery
    q = np.sqrt(qs.min(axis=0)) * 0.6 + 0.4 * _radial(grid, sl, centre, r_eq)
    return painter.paint(site, "conglomerate", sl, mask, (q * q).astype(np.float32),
                         float((3.0 * mask.sum() * painter.vox_ml * 1000.0 / (4.0 * np.pi)) ** (1 / 3)), centre)


def _radial(grid: Grid, sl, centre, radius: float) -> np.ndarray:
    """Distance to `centre` in units of `radius` over the box `sl` (float32)."""
    return np.sqrt(Ellipsoid(np.asarray(centre, float), np.full(3, float(radius))).q(grid, sl))
