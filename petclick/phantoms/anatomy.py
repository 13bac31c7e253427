"""A seeded adult anatomy (head to mid-thigh) and its organ label map.

Positions are written for a reference adult in the body frame of grid.py (u lateral, + left;
v antero-posterior, + posterior; w depth below the vertex) and scaled per case by height, width
and depth factors; every organ gets its own size factor and position jitter. Semi-axes and radii
are clamped to the voxel size so a coarse grid (48x48x64) still holds every organ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from petclick.phantoms.fields import smooth_noise
from petclick.phantoms.grid import Grid
from petclick.phantoms.labels import ORGAN_LABELS as L
from petclick.phantoms.shapes import Capsule, Ellipsoid, Extrusion, Shape, paint, rotation

SOFT, FAT = L["soft_tissue"], L["fat"]

# Reference body outline: depth w, half-width a, anterior/posterior half-depth, centre v.
_BODY = np.array([
    # w     a     b_ant b_post cv
    [0.0,   20,   22,   22,   -5],
    [15,    52,   64,   62,   -5],
    [50,    71,   88,   86,   -5],
    [100,   76,   96,   92,   -5],
    [150,   72,   95,   85,   -5],
    [190,   60,   82,   70,   -2],
    [215,   52,   55,   62,   10],
    [255,   56,   57,   62,   12],
    [285,   105,  72,   78,   12],
    [315,   165,  100,  98,   2],
    [380,   162,  110,  102,  0],
    [480,   157,  115,  102,  0],
    [560,   152,  118,  100,  0],
    [650,   147,  118,  96,   0],
    [740,   156,  112,  96,   0],
    [820,   170,  104,  100,  0],
    [880,   166,  96,   96,   0],
    [912,   150,  80,   84,   0],
])


@dataclass
class Anatomy:
    """Everything a case's anatomy needs: scale factors, the body outline and the organ shapes."""

    scale: np.ndarray                      # (s_u, s_v, s_w)
    offset: np.ndarray                     # body-centre shift (mm)
    body: Extrusion
    thighs: list[Extrusion]
    fat_mm: float
    organs: dict[str, list[Shape]] = field(default_factory=dict)
    bone_shapes: list[tuple[int, Shape]] = field(default_factory=list)   # (label, shape) for cortical HU
    vertebra_pitch: float = 28.0
    texture_seed: int = 0                  # seeds the bowel-loop texture

    def p(self, u: float, v: float, w: float) -> np.ndarray:
        """Reference position -> this case's body frame."""
        return np.array([u, v, w]) * self.scale + self.offset


class _Builder:
    """Samples one anatomy: reference geometry, per-case scaling, per-organ jitter, voxel clamps."""

    def __init__(self, rng: np.random.Generator, grid: Grid):
        self.rng, self.grid = rng, grid
        self.sp = np.asarray(grid.spacing, float)
        width = rng.uniform(0.85, 1.2)
        self.scale = np.array([width, width * rng.uniform(0.9, 1.15), rng.uniform(0.92, 1.06)])
        self.offset = np.array([rng.uniform(-15, 15), rng.uniform(-12, 12), 0.0])

    def p(self, u, v, w, jitter: float = 6.0) -> np.ndarray:
        j = self.rng.uniform(-jitter, jitter, 3) if jitter else 0.0
        return (np.array([u, v, w]) + j) * self.scale + self.offset

    def axes(self, a, b, c, size: float = 1.0, rot: np.ndarray | None = None, min_vox: float = 0.9) -> np.ndarray:
        ax = np.array([a, b, c]) * self.scale * size
        floor = min_vox * (self.sp if rot is None else np.full(3, self.sp.max()))
        return np.maximum(ax, floor)

    def radius(self, r: float, min_vox: float = 0.75) -> float:
        return float(max(r * self.scale[:2].mean(), min_vox * self.sp[:2].max()))

    def ellipsoid(self, centre, axes_ref, size=1.0, rot=None, jitter=6.0) -> Ellipsoid:
        return Ellipsoid(self.p(*centre, jitter=jitter), self.axes(*axes_ref, size=size, rot=rot), rot)

    def capsule(self, p0, p1, r, jitter=0.0) -> Capsule:
        return Capsule(self.p(*p0, jitter=jitter), self.p(*p1, jitter=jitter), self.radius(r))

    def size(self, lo=0.85, hi=1.15) -> float:
        return float(self.rng.uniform(lo, hi))


def sample_anatomy(rng: np.random.Generator, grid: Grid) -> Anatomy:
    """Draw one patient's anatomy (sizes, positions, organ shapes) from `rng`."""
    b = _Builder(rng, grid)
    s, o = b.scale, b.offset
    k = _BODY
    body = Extrusion(k[:, 0] * s[2], np.full(len(k), o[0]), k[:, 4] * s[1] + o[1], k[:, 1] * s[0],
                     k[:, 2] * s[1], k[:, 3] * s[1], power=2.2)
    thighs = []
    for side in (-1, 1):
        w = np.array([868.0, 1000.0, 1250.0]) * s[2]
        a = np.array([78.0, 74.0, 64.0]) * s[0]
        bb = np.array([82.0, 78.0, 68.0]) * s[1]
        cv = 100.0 * s[1] + o[1] - bb
        thighs.append(Extrusion(w, np.full(3, side * 88.0 * s[0] + o[0]), cv, a, bb, bb, power=2.0))
    fat_mm = float(max(rng.uniform(6.0, 22.0) * s[0], 1.0 * b.sp[:2].max()))
    an = Anatomy(s, o, body, thighs, fat_mm, texture_seed=int(rng.integers(2**31)))
    org = an.organs
    lr = (-1, 1)

    # Head: skull shell around the brain, mandible, salivary glands.
    head_size = b.size(0.92, 1.08)
    hc = b.p(0, -2, 95, jitter=2)
    brain_ax = b.axes(62, 80, 68, size=head_size)
    skull_t = np.maximum(7.0, 1.0 * b.sp)
    org["skull"] = [Ellipsoid(hc, brain_ax + skull_t)]
    org["brain"] = [Ellipsoid(hc, brain_ax)]
    chin = (0, -72, 200)
    for side in lr:
        angle, top = (side * 50, -8, 190), (side * 52, 2, 158)
        org["skull"] += [b.capsule(chin, angle, 7), b.capsule(angle, top, 7)]
    gl = b.size()
    org["salivary_glands"] = [b.ellipsoid((side * 52, 0, 156), (12, 20, 22), gl, jitter=3) for side in lr]
    org["salivary_glands"] += [b.ellipsoid((side * 32, -35, 198), (10, 13, 10), gl, jitter=3) for side in lr]

    # Airways.
    carina = (0, 2, 400)
    org["airway"] = [b.capsule((0, -30, 212), carina, 9)] + [b.capsule(carina, (side * 48, 12, 440), 6) for side in lr]

    # Lungs: axial profiles from the apex to the base (liver and heart later overwrite the base).
    lung_size = b.size(0.9, 1.1)
    lw = np.array([285.0, 305, 380, 460, 530, 548])
    lungs = []
    for side in lr:
        cu = side * np.array([70.0, 78, 85, 87, 88, 88]) * s[0] + o[0]
        cv = np.array([12.0, 14, 15, 15, 18, 22]) * s[1] + o[1]
        a = np.array([12.0, 38, 55, 58, 56, 40]) * s[0] * lung_size
        ba = np.array([14.0, 45, 72, 78, 70, 50]) * s[1] * lung_size
        bp = np.array([14.0, 45, 72, 80, 74, 56]) * s[1] * lung_size
        lungs.append(Extrusion(lw * s[2], cu, cv, np.maximum(a, b.sp[0]), np.maximum(ba, b.sp[1]), np.maximum(bp, b.sp[1])))
    org["lung"] = lungs

    # Skeleton: spine (vertebral bodies and posterior elements), sacrum, ribs, pelvis, femurs.
    sw = np.array([200.0, 260, 300, 420, 560, 700, 780]) * s[2]
    sv_body = np.array([22.0, 22, 32, 48, 42, 34, 50]) * s[1] + o[1]
    sa = np.array([13.0, 15, 17, 19, 21, 24, 24]) * s[0]
    sb = np.array([10.0, 11, 13, 15, 16, 17, 17]) * s[1]
    cu = np.full(len(sw), o[0])
    spine_body = Extrusion(sw, cu, sv_body, np.maximum(sa, b.sp[0]), np.maximum(sb, b.sp[1]), np.maximum(sb, b.sp[1]))
    post_v = sv_body + sb + np.maximum(np.array([22.0, 22, 24, 28, 30, 30, 30]) * s[1], 1.5 * b.sp[1])
    pe_a = np.maximum(np.array([9.0, 9, 9, 9, 10, 10, 10]) * s[0], b.sp[0])
    pe_b = np.maximum(np.array([10.0, 10, 11, 12, 13, 13, 13]) * s[1], b.sp[1])
    spine_post = Extrusion(sw, cu, post_v, pe_a, pe_b, pe_b)
    sacrum = Ellipsoid(b.p(0, 62, 815, jitter=3), b.axes(44, 16, 52, rot=rotation(axis="u", angle=-0.5)), rotation(axis="u", angle=-0.5))
    org["spine"] = [spine_body, spine_post, sacrum]
    an.vertebra_pitch = float(rng.uniform(25.0, 31.0) * s[2])

    org["ribs"] = []
    for n in range(10):
        w0 = (330.0 + 24.0 * n) * s[2]
        org["ribs"].append(_rib_ring(body, w0, fat_mm + max(8.0, b.sp[:2].max()), b.sp))

    pel = []
    for side in lr:
        rot = rotation(axis="w", angle=side * 0.45) @ rotation(axis="v", angle=-side * 0.25)
        pel.append(Ellipsoid(b.p(side * 88, 28, 770, jitter=4), b.axes(9, 52, 58, rot=rot, min_vox=0.8), rot))
        pel.append(b.capsule((side * 82, -12, 868), (side * 14, -72, 890), 10))   # superior pubic ramus
        pel.append(b.capsule((side * 84, 12, 878), (side * 52, 34, 928), 12))    # ischium
        pel.append(b.capsule((side * 84, 8, 790), (side * 84, 4, 860), 16))      # body of ilium down to the acetabulum
    org["pelvis_bone"] = pel
    fem = []
    for side in lr:
        head = b.p(side * 88, 2, 872, jitter=3)
        neck_end = b.p(side * 116, 6, 905, jitter=3)
        knee = b.p(side * 96, -2, 1250, jitter=4)
        fem.append(Ellipsoid(head, np.maximum(np.full(3, 24.0) * s.mean(), 0.9 * b.sp)))
        fem.append(Capsule(head, neck_end, b.radius(15)))
        fem.append(Capsule(neck_end, knee, b.radius(14)))
    org["femur"] = fem

    # Thorax: heart (chambers as blood pool, left-ventricular myocardium), mediastinal fat, aorta.
    hs = b.size(0.9, 1.15)
    hrot = rotation(axis="w", angle=0.5) @ rotation(axis="v", angle=0.35)
    heart = b.ellipsoid((20, -38, 478), (60, 46, 55), hs, rot=hrot)
    lv_centre = heart.center + np.array([18.0, 2.0, 12.0]) * s
    lv_out = Ellipsoid(lv_centre, b.axes(36, 32, 44, size=hs, rot=hrot), hrot)
    wall = float(max(rng.uniform(9.0, 13.0), 1.1 * b.sp.max()))
    lv_in = Ellipsoid(lv_centre, np.maximum(lv_out.axes - wall, 0.6 * b.sp.max()), hrot)
    org["heart"] = [heart]
    org["myocardium"] = [lv_out]
    org["lv_cavity"] = [lv_in]
    org["mediastinal_fat"] = [b.ellipsoid((0, -12, 390), (32, 38, 62), b.size(), jitter=4)]
    org["aorta"] = [
        b.capsule((10, -32, 445), (4, -26, 362), 13),
        b.capsule((4, -26, 362), (18, 28, 368), 12),
        b.capsule((18, 28, 368), (20, 20, 560), 11),
        b.capsule((20, 20, 560), (4, 2, 742), 9),
    ]
    org["iliac_arteries"] = []
    for side in lr:
        mid, end = (side * 48, 10, 820), (side * 76, -18, 884)
        org["iliac_arteries"] += [b.capsule((4, 2, 742), mid, 6), b.capsule(mid, end, 6)]

    # Abdomen: visceral fat, liver, spleen, kidneys, small bowel; pelvis: bladder.
    org["visceral_fat"] = [b.ellipsoid((0, 22, 690), (78, 48, 95), b.size(0.8, 1.2), jitter=5)]
    ls = b.size()
    lrot = rotation(axis="w", angle=rng.uniform(-0.2, 0.2))
    org["liver"] = [b.ellipsoid((-62, 0, 570), (80, 85, 78), ls, rot=lrot),
                    b.ellipsoid((8, -48, 552), (55, 38, 38), ls)]
    srot = rotation(axis="w", angle=-0.5)
    org["spleen"] = [b.ellipsoid((96, 42, 565), (24, 50, 52), b.size(0.8, 1.25), rot=srot)]
    ks = b.size(0.9, 1.1)
    org["kidneys"] = [b.ellipsoid((side * 70, 52, 640 + (12 if side < 0 else 0)), (27, 24, 54), ks,
                                  rot=rotation(axis="v", angle=side * 0.2), jitter=6) for side in lr]
    org["small_bowel"] = [b.ellipsoid((-5, -38, 722), (92, 52, 80), b.size(0.85, 1.1), jitter=6)]
    fill = b.size(0.6, 1.35)
    org["bladder"] = [b.ellipsoid((0, -46, 866), (45, 38, 36), fill, jitter=4)]
    org["prostate"] = [b.ellipsoid((0, -22, 912), (18, 15, 16), 1.0, jitter=2)]

    an.bone_shapes = [(L["spine"], sh) for sh in org["spine"]] + [(L["pelvis_bone"], sh) for sh in pel] + \
                     [(L["femur"], sh) for sh in fem] + [(L["skull"], sh) for sh in org["skull"][1:]]
    return an


def _rib_ring(body: Extrusion, w0: float, depth_mm: float, sp: np.ndarray) -> Extrusion:
    """One rib level: a thin band just inside the body outline at depth w0 (drawn as an outer/inner pair)."""
    half = max(4.0, 0.5 * sp[2] + 0.01)
    w = np.array([w0 - half, w0 + half])
    cu, cv, a, ba, bp = body.profile(w.astype(np.float32))
    return Extrusion(w, cu, cv, a - depth_mm, ba - depth_mm, bp - depth_mm, power=2.2)


def render_organs(an: Anatomy, grid: Grid) -> np.ndarray:
    """The organ label map (uint8, Fortran order) of an anatomy, painted back to front."""
    organs = np.zeros(grid.shape, dtype=np.uint8, order="F")
    sp = np.asarray(grid.spacing)
    for outline in [an.body] + an.thighs:
        sl = outline.box(grid)
        if sl is None:
            continue
        view = organs[sl]
        q = outline.q(grid, sl)
        view[(q <= 1.0) & (view == 0)] = FAT
        q = outline.shrunk(an.fat_mm).q(grid, sl)
        view[q <= 1.0] = SOFT
        del q
    for sh in an.organs["visceral_fat"] + an.organs["mediastinal_fat"]:
        paint(organs, grid, sh, FAT, only=(SOFT,))
    for sh in an.organs["lung"]:
        paint(organs, grid, sh, L["lung"], only=(SOFT, FAT))
    for sh in an.organs["airway"]:
        paint(organs, grid, sh, L["airway"], only=(SOFT, FAT, L["lung"]))
    _paint_ribs(organs, grid, an)
    _paint_spine(organs, grid, an, sp)
    for name in ("pelvis_bone", "femur"):
        for sh in an.organs[name]:
            paint(organs, grid, sh, L[name], only=(SOFT, FAT, L["pelvis_bone"]))
    for sh in an.organs["skull"]:
        paint(organs, grid, sh, L["skull"], only=(SOFT, FAT))
    for sh in an.organs["brain"]:
        paint(organs, grid, sh, L["brain"])
    for sh in an.organs["salivary_glands"]:
        paint(organs, grid, sh, L["salivary_glands"], only=(SOFT, FAT, L["skull"]))
    for sh in an.organs["heart"]:
        paint(organs, grid, sh, L["blood_pool"], only=(SOFT, FAT, L["lung"]))
    for sh in an.organs["myocardium"]:
        paint(organs, grid, sh, L["myocardium"], only=(SOFT, FAT, L["lung"], L["blood_pool"]))
    for sh in an.organs["lv_cavity"]:
        paint(organs, grid, sh, L["blood_pool"])
    for sh in an.organs["aorta"] + an.organs["iliac_arteries"]:
        paint(organs, grid, sh, L["blood_pool"], only=(SOFT, FAT, L["lung"]))
    for name in ("liver", "spleen", "kidneys"):
        for sh in an.organs[name]:
            paint(organs, grid, sh, L[name], only=(SOFT, FAT, L["lung"]))
    for sh in an.organs["bladder"]:
        paint(organs, grid, sh, L["bladder"], only=(SOFT, FAT))
    _paint_bowel(organs, grid, an)
    return organs


def _paint_spine(organs: np.ndarray, grid: Grid, an: Anatomy, sp: np.ndarray) -> None:
    """Vertebral bodies separated by discs (when the slices are thin enough to show them), arches, sacrum."""
    body, post, sacrum = an.organs["spine"]
    only = (SOFT, FAT, L["lung"])
    for sh in (body, post):
        sl = sh.box(grid)
        if sl is None:
            continue
        mask = sh.q(grid, sl) <= 1.0
        if sp[2] <= 0.4 * an.vertebra_pitch:
            w = grid.w[sl[2]]
            phase = np.mod(w - w[0], an.vertebra_pitch) / an.vertebra_pitch
            mask[:, :, phase < 0.2] = False
        view = organs[sl]
        mask &= np.isin(view, only)
        view[mask] = L["spine"]
    paint(organs, grid, sacrum, L["spine"], only=(SOFT, FAT))


def _paint_ribs(organs: np.ndarray, grid: Grid, an: Anatomy) -> None:
    """Rib bands: the ring between the body outline shrunk by the fat layer and by one rib depth more."""
    rib_t = max(9.0, 1.0 * max(grid.spacing[:2]))
    for ring in an.organs["ribs"]:
        sl = ring.box(grid)
        if sl is None:
            continue
        outer = ring.q(grid, sl) <= 1.0
        outer &= ring.shrunk(rib_t).q(grid, sl) > 1.0
        # Ribs stop short of the sternum and the spine: drop the anterior midline band.
        v = grid.v[sl[1]][None, :, None]
        u = grid.u[sl[0]][:, None, None]
        outer &= ~((np.abs(u - an.offset[0]) < 30 * an.scale[0]) & (v < an.offset[1]))
        view = organs[sl]
        outer &= np.isin(view, (SOFT, FAT))
        view[outer] = L["ribs"]


def _paint_bowel(organs: np.ndarray, grid: Grid, an: Anatomy) -> None:
    """Small-bowel loops: a thresholded smooth noise field inside the bowel region, over soft tissue only."""
    region = an.organs["small_bowel"][0]
    sl = region.box(grid)
    if sl is None:
        return
    inside = region.q(grid, sl) <= 1.0
    inside &= organs[sl] == SOFT
    if not inside.any():
        return
    cells = np.maximum(2, np.round(np.array(inside.shape) * np.asarray(grid.spacing) / 28.0)).astype(int)
    field = smooth_noise(np.random.default_rng(an.texture_seed), inside.shape, cells)
    thr = np.quantile(field[inside], 0.45)
    loops = inside & (field > thr)
    if not loops.any():
        loops = inside
    organs[sl][loops] = L["small_bowel"]
