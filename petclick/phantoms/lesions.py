"""Lesions: count, site, size, shape and uptake drawn per case, painted inside their own box.

Sites are the lymph-node stations (neck, axilla, mediastinum, para-aortic, iliac), lungs, liver
and bone, plus nodes placed against the kidneys, bladder or heart (and the prostate bed under
PSMA), where physiological uptake hides them. Shapes are ellipsoids, lobulated ellipsoids (radius
modulated by a smooth field) and unions of ellipsoids. A candidate is kept only if it lies mostly
in the tissue its site allows, forms one 18-connected component and stays at least one voxel
away from every other lesion, so each lesion of the label is exactly one lesion of the list.
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
from petclick.phantoms.uptake import LESION_SUV

NODE_TISSUE = (L["soft_tissue"], L["fat"])
SITE_WEIGHTS = {
    "fdg": {"neck": .10, "axilla": .08, "mediastinum": .12, "para_aortic": .09, "iliac": .07, "lung": .15,
            "liver": .12, "bone": .12, "near_kidney": .05, "near_bladder": .05, "near_heart": .05},
    "psma": {"neck": .04, "axilla": .03, "mediastinum": .06, "para_aortic": .13, "iliac": .18, "lung": .05,
             "liver": .04, "bone": .25, "near_kidney": .05, "near_bladder": .07, "near_heart": .03, "prostate": .07},
}
ADJACENT_SITES = ("near_kidney", "near_bladder", "near_heart")
RADIUS_MM = (3.0, 30.0)
MIN_RADIUS_VOX = 1.5
MIN_VOXELS = 5
MAX_LESIONS = 20
LOBE_MAX = 1.45


@dataclass
class Lesion:
    """One painted lesion, as recorded in the case metadata."""

    site: str
    shape: str
    radius_mm: float          # geometric-mean semi-axis after clamping to the voxel size
    suv: float                # peak SUV before blur
    necrotic: bool
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
        d = direction / np.linalg.norm(direction)
        return organ.center + d * (organ.surface_distance(d) + r + self.rng.uniform(0.5, 4.0))

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

    At least one lesion is placed when n_lesions >= 1 (a liver lesion as the last resort)."""
    sampler = SiteSampler(an, rng)
    weights = SITE_WEIGHTS[tracer]
    sites, probs = list(weights), np.array(list(weights.values()))
    probs = probs / probs.sum()
    sp = np.asarray(grid.spacing)
    lesions: list[Lesion] = []
    vox_ml = float(np.prod(sp)) / 1000.0
    for n in range(n_lesions):
        forced_adjacent = n == 0 and rng.uniform() < 0.5
        for attempt in range(30):
            if attempt == 29 and not lesions and n == n_lesions - 1:
                site = "liver"
            elif forced_adjacent and attempt < 15:
                site = str(rng.choice([s for s in ADJACENT_SITES if s in weights]))
            else:
                site = str(rng.choice(sites, p=probs))
            les = _try_lesion(rng, sampler, site, grid, sp, organs, label, pet, ct, suv_lut, hu_lut, tracer, vox_ml)
            if les is not None:
                lesions.append(les)
                break
    return lesions


def _try_lesion(rng, sampler, site, grid, sp, organs, label, pet, ct, suv_lut, hu_lut, tracer, vox_ml):
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
    sl, mask, q = _lesion_mask(rng, grid, centre, axes, rot, kind)
    if sl is None:
        return None
    full = int(mask.sum())
    tissue = organs[sl]
    mask &= np.isin(tissue, allowed)
    if not mask.any():
        return None
    cc = cc3d.connected_components(mask, connectivity=18)
    counts = np.bincount(cc.ravel())
    counts[0] = 0
    keep = int(counts.argmax())
    mask = cc == keep
    kept = int(counts[keep])
    if kept < MIN_VOXELS or kept < 0.6 * full:
        return None
    if np.any(binary_dilation(mask, structure=np.ones((3, 3, 3), bool)) & (label[sl] > 0)):
        return None
    # Uptake: peak SUV with contrast over the host tissue, smooth heterogeneity, necrotic core if large.
    lo, hi = LESION_SUV[tracer]
    host = float(suv_lut[np.bincount(tissue[mask], minlength=len(suv_lut)).argmax()])
    lo = min(max(lo, 1.5 * host), hi)
    suv = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    values = suv * (1.0 + 0.15 * smooth_noise(rng, mask.shape, 2))
    r_eff = float(np.prod(axes) ** (1 / 3))
    necrotic = bool(r_eff >= 15.0 and rng.uniform() < (0.5 if tracer == "fdg" else 0.2))
    if necrotic:
        values[q <= 0.3] *= np.float32(rng.uniform(0.15, 0.35))
    np.maximum(values, 0.3 * suv if not necrotic else 0.1 * suv, out=values)
    pet[sl][mask] = values[mask]
    # CT: nodes and soft-tissue lesions 25-45 HU, liver lesions hypodense, bone lytic (FDG) or sclerotic (PSMA).
    if site == "liver":
        hu = float(hu_lut[L["liver"]] - rng.uniform(15, 30))
    elif site == "bone":
        hu = float(rng.uniform(80, 200) if tracer == "fdg" else rng.uniform(600, 1000))
    else:
        hu = float(rng.uniform(25, 45))
    ct[sl][mask] = np.float32(hu)
    label[sl][mask] = 1
    idx = np.argwhere(mask).mean(axis=0) + np.array([s.start for s in sl])
    return Lesion(site=site, shape=kind, radius_mm=round(r_eff, 2), suv=round(suv, 3), necrotic=necrotic,
                  center_mm=[round(float(c), 2) for c in centre], center_voxel=[int(round(c)) for c in idx],
                  voxels=kept, volume_ml=round(kept * vox_ml, 4))
