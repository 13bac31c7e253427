"""Synthetic whole-body PET/CT phantoms: the embedded default cohort (docs/phantoms.md).

generate_case() builds one seeded case in memory; generate_cohort() writes a cohort in the
autoPET layout with its datalist. Modules: grid (voxel grid, body frame), shapes (primitives),
anatomy (body and organs), uptake (tracer tables), lesions, physics (PSF, noise), case, cohort.
"""

from petclick.phantoms.case import PhantomCase, generate_case
from petclick.phantoms.cohort import generate_cohort, plan_cohort
from petclick.phantoms.labels import ORGAN_LABELS

__all__ = ["ORGAN_LABELS", "PhantomCase", "generate_case", "generate_cohort", "plan_cohort"]
