"""One phantom case: anatomy -> organ map -> CT/PET tables -> lesions -> scanner physics -> clicks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from petclick.io.clickfile import Clicks
from petclick.phantoms.anatomy import Anatomy, render_organs, sample_anatomy
from petclick.phantoms.grid import Grid, derive_spacing
from petclick.phantoms.labels import ORGAN_LABELS
from petclick.phantoms.lesions import MAX_LESIONS, place_lesions
from petclick.phantoms.physics import CENTRES, ct_noise, ct_partial_volume, flat_view, pet_physics
from petclick.phantoms.shapes import Capsule, Ellipsoid
from petclick.phantoms.uptake import TRACERS, sample_tables

MIN_SHAPE = 16
CLICK_BUDGET = 10


@dataclass
class PhantomCase:
    """Arrays of one case on a common grid (Fortran order, as NIfTI stores them) and its metadata."""

    case_id: str
    ct: np.ndarray          # HU, float32
    pet: np.ndarray         # SUV, float32, >= 0
    label: np.ndarray       # uint8 0/1, lesion extent before blur
    organs: np.ndarray      # uint8 organ label map (ORGAN_LABELS)
    affine: np.ndarray      # 4x4 voxel -> RAS mm
    clicks: Clicks | None
    meta: dict = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def check_geometry(shape, spacing) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Validate a grid request; returns (shape, spacing) with the spacing derived from the shape if None."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < MIN_SHAPE:
        raise ValueError(f"shape must be 3 sizes of at least {MIN_SHAPE} voxels, got {shape}")
    if spacing is None:
        spacing = derive_spacing(shape)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive sizes in mm, got {spacing}")
    return shape, spacing  # type: ignore[return-value]


def _apply_bone_cortex(ct: np.ndarray, organs: np.ndarray, an: Anatomy, grid: Grid, cortex_hu: float) -> None:
    """Raise HU towards the outer shell of each long/flat bone: marrow inside, cortex at the surface."""
    cortex_mm = 3.0
    for label, shape in an.bone_shapes:
        sl = shape.box(grid)
        if sl is None:
            continue
        bone = organs[sl] == label
        if not bone.any():
            continue
        if isinstance(shape, Ellipsoid):
            frac = min(0.6, cortex_mm / float(shape.axes.min()))
        elif isinstance(shape, Capsule):
            frac = min(0.6, cortex_mm / shape.radius)
        else:
            frac = 0.3
        r = np.sqrt(shape.q(grid, sl))
        weight = np.clip((r - (1.0 - frac)) / frac, 0.0, 1.0)
        view = ct[sl]
        marrow = view[bone]
        view[bone] = marrow + (np.float32(cortex_hu) - marrow) * weight[bone]


def _lookup(table: np.ndarray, organs: np.ndarray) -> np.ndarray:
    """table[organs] as a Fortran-ordered float32 array (no C-order temporary)."""
    out = np.take(table, flat_view(organs), mode="clip")   # "clip" skips the per-element bounds check
    return out.reshape(organs.shape, order="F")


def generate_case(case_id: str, seed: int, shape=(96, 96, 128), spacing=None, tracer: str = "fdg",
                  negative: bool = False, centre: int = 0, clicks: bool = True) -> PhantomCase:
    """Generate one whole-body PET/CT phantom case; the same arguments give the same arrays.

    shape: voxels (X, Y, Z); spacing: mm, derived from the shape when None (whole-body field of
    view); tracer: "fdg" or "psma"; negative: no lesions; centre: scanner index into CENTRES;
    clicks: run the official click simulator (10 per kind) on the result.
    """
    if tracer not in TRACERS:
        raise ValueError(f"tracer must be one of {TRACERS}, got {tracer!r}")
    if not 0 <= int(centre) < len(CENTRES):
        raise ValueError(f"centre must be in 0..{len(CENTRES) - 1}, got {centre}")
    shape, spacing = check_geometry(shape, spacing)
    s_anat, s_tab, s_les, s_phys = np.random.SeedSequence(int(seed)).spawn(4)
    grid = Grid(shape, spacing)

    an = sample_anatomy(np.random.default_rng(s_anat), grid)
    organs = render_organs(an, grid)

    rng_tab = np.random.default_rng(s_tab)
    suv_lut, hu_lut, values = sample_tables(rng_tab, tracer)
    pet = _lookup(suv_lut, organs)
    ct = _lookup(hu_lut, organs)
    _apply_bone_cortex(ct, organs, an, grid, values["cortex_hu"])

    label = np.zeros(shape, dtype=np.uint8, order="F")
    rng_les = np.random.default_rng(s_les)
    n_planned = 0 if negative else int(min(MAX_LESIONS, rng_les.geometric(0.2) + rng_les.integers(0, 2)))
    lesions = place_lesions(rng_les, an, grid, organs, label, pet, ct, suv_lut, hu_lut, tracer, n_planned) if n_planned else []

    rng_phys = np.random.default_rng(s_phys)
    cdef = CENTRES[int(centre)]
    fwhm = float(rng_phys.uniform(*cdef["fwhm_mm"]))
    ct_partial_volume(ct)
    ct_noise(ct, values["ct_noise_hu"], rng_phys)
    pet_physics(pet, spacing, fwhm, cdef["noise_k"], rng_phys)

    meta = {
        "case": case_id, "seed": int(seed), "tracer": tracer, "centre": int(centre), "centre_name": cdef["name"],
        "negative": bool(negative), "shape": list(shape), "spacing_mm": [round(s, 6) for s in spacing],
        "psf_fwhm_mm": round(fwhm, 3), "pet_noise_k": cdef["noise_k"], "ct_noise_hu": values["ct_noise_hu"],
        "organ_suv": values["suv"], "organ_hu": values["hu"], "organ_labels": dict(ORGAN_LABELS),
        "lesions_planned": n_planned, "lesions": [les.to_dict() for les in lesions],
        "body_scale": [round(float(x), 4) for x in an.scale],
    }
    case = PhantomCase(case_id, ct, pet, label, organs, grid.affine, None, meta)
    if clicks:
        case.clicks = simulate_case_clicks(case)
    return case


def simulate_case_clicks(case: PhantomCase) -> Clicks:
    """The official-rule clicks of a case (petclick.clicks.simulate), seeded by the case seed."""
    from petclick.clicks.simulate import simulate_clicks

    return simulate_clicks(case.label, case.pet, budget=CLICK_BUDGET, seed=case.meta["seed"])
