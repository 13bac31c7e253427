"""Click logic: official-compatible simulation, training curricula, error-driven clicks, encodings, geometry.

autoPET V's corrective scribbles live in petclick.clicks.strokes and petclick.clicks.scribbles, their
training curriculum in petclick.clicks.scribble_curriculum (`clicks.curriculum.kind: scribbles`), and the
curricula registry with the training transforms (SimulateTrainingClicksd, BackgroundThresholdd) in
petclick.clicks.curriculum. Import those directly: they pull in scikit-image and networkx, which the click
pipeline of inference does not need.
"""

from petclick.clicks.click_curriculum import ClickCurriculum, count_distribution
from petclick.clicks.encoding import (
    EncodeClicks,
    EncodeClicksd,
    encoder_from_config,
    encoderd_from_config,
    num_click_channels,
)
from petclick.clicks.error_driven import next_error_click, next_error_clicks
from petclick.clicks.geometry import ClicksToVoxeld, ClicksToWorldd, clicks_to_voxel, clicks_to_world
from petclick.clicks.loading import LoadClicksd
from petclick.clicks.simulate import simulate_clicks

__all__ = [
    "simulate_clicks", "EncodeClicks", "EncodeClicksd", "encoder_from_config", "encoderd_from_config",
    "num_click_channels",
    "ClicksToWorldd", "ClicksToVoxeld", "clicks_to_world", "clicks_to_voxel", "LoadClicksd",
    "ClickCurriculum", "count_distribution",
    "next_error_clicks", "next_error_click",
]
