"""Reading one prediction case: CT and PET on the PET grid, through petclick.io's checks.

The reading itself lives in petclick.io.casefiles (the interactive session reads cases the same
way); this module keeps the names the prediction commands import.
- CT and PET on different grids: the CT is resampled onto the PET grid (trilinear, air outside).
- PET and CT values: petclick.io.images.checked_pet / checked_ct (repaired with a warning, or refused).
- Clicks: petclick.io.clickfile.read_clicks under the run's click policy (petclick.io.clickpolicy).
"""

from petclick.io.casefiles import AIR_HU, load_prediction_case, read_image, resample_to, same_grid

__all__ = ["AIR_HU", "load_prediction_case", "read_image", "resample_to", "same_grid"]
