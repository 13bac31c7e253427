"""Reading one prediction case: petclick.io.casefiles (CT and PET on the PET grid through
petclick.io's checks), re-exported here for the prediction commands; clicks are read with
petclick.io.clickfile.read_clicks under the run's click policy (petclick.io.clickpolicy)."""

from petclick.io.casefiles import AIR_HU, load_prediction_case, read_image, resample_to, same_grid

__all__ = ["AIR_HU", "load_prediction_case", "read_image", "resample_to", "same_grid"]
