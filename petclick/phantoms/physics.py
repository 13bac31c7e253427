"""Scanner physics: PET point-spread blur with count-dependent noise, CT noise, per centre.

PET: Poisson-like noise (s.d. proportional to sqrt(SUV), so relative noise is stronger where
counts are low) is added to the true activity and the sum is blurred with a Gaussian PSF; the
noise thus comes out spatially correlated at the scanner's resolution, as in reconstructed PET.
Its amplitude is pre-scaled by the PSF kernel's energy so that the voxel noise after blurring is
`noise_k * sqrt(SUV)` whatever the voxel size. Partial-volume effects fall out of the blur.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
TRUNCATE = 3.0

# Each centre (scanner): PSF FWHM range in mm and PET noise coefficient (voxel s.d. = k * sqrt(SUV)).
CENTRES: tuple[dict, ...] = (
    {"name": "A", "fwhm_mm": (5.0, 5.6), "noise_k": 0.10},
    {"name": "B", "fwhm_mm": (5.8, 6.4), "noise_k": 0.15},
    {"name": "C", "fwhm_mm": (6.6, 7.2), "noise_k": 0.20},
    {"name": "D", "fwhm_mm": (7.4, 8.0), "noise_k": 0.26},
)


def kernel_energy(sigma_vox: float) -> float:
    """Sum of squared weights of the discrete Gaussian that gaussian_filter1d applies (noise variance factor)."""
    radius = int(TRUNCATE * sigma_vox + 0.5)
    delta = np.zeros(2 * radius + 3)
    delta[radius + 1] = 1.0
    kernel = gaussian_filter1d(delta, sigma_vox, mode="constant", truncate=TRUNCATE) if sigma_vox > 0 else delta
    return float(np.sum(kernel ** 2))


def flat_view(a: np.ndarray) -> np.ndarray:
    """1-D view of a C- or Fortran-contiguous array in its memory order (no copy)."""
    return a.reshape(-1, order="F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C")


def pet_physics(pet: np.ndarray, spacing, fwhm_mm: float, noise_k: float, rng: np.random.Generator) -> np.ndarray:
    """In place: add count-dependent noise to the true SUV map, blur with the PSF, clip at 0."""
    sigmas = [fwhm_mm * FWHM_TO_SIGMA / s for s in spacing]
    energy = float(np.prod([kernel_energy(s) for s in sigmas]))
    flat = flat_view(pet)
    idx = np.flatnonzero(flat > 0)   # noise only where there is activity; air stays exactly 0
    vals = flat[idx]
    noise = rng.standard_normal(idx.size, dtype=np.float32)
    noise *= np.sqrt(vals)
    noise *= np.float32(noise_k / np.sqrt(energy))
    flat[idx] = vals + noise
    del vals, noise, idx
    for axis, sigma in enumerate(sigmas):
        if sigma > 0.05:
            gaussian_filter1d(pet, sigma, axis=axis, output=pet, mode="nearest", truncate=TRUNCATE)
    np.maximum(pet, 0.0, out=pet)
    return pet


CT_RANGE_HU = (-1024.0, 3071.0)   # the 12-bit range scanners store
#: The CT on the PET grid (autoPET's CTres) averages the finer native CT over each PET voxel: a
#: Gaussian of this s.d. in voxels gives its partial-volume mixing at tissue borders (lung nodules'
#: margins, cortical bone, the skin).
CT_PARTIAL_VOLUME_VOX = 0.45


def ct_partial_volume(ct: np.ndarray, sigma_vox: float = CT_PARTIAL_VOLUME_VOX) -> np.ndarray:
    """In place: mix each CT voxel with its neighbours, as resampling a fine CT onto the PET grid does."""
    for axis in range(ct.ndim):
        gaussian_filter1d(ct, sigma_vox, axis=axis, output=ct, mode="nearest", truncate=TRUNCATE)
    return ct


def ct_noise(ct: np.ndarray, sd_hu: float, rng: np.random.Generator) -> np.ndarray:
    """In place: white Gaussian noise of `sd_hu` on the CT, clipped to the stored HU range."""
    flat = flat_view(ct)
    noise = rng.standard_normal(flat.size, dtype=np.float32)
    noise *= np.float32(sd_hu)
    flat += noise
    np.clip(ct, *CT_RANGE_HU, out=ct)
    return ct
