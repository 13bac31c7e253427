"""Click logic: official-compatible simulation, training curricula, error-driven clicks, encodings, geometry."""

from petclick.clicks.encoding import EncodeClicks, EncodeClicksd, encoder_from_config, num_click_channels
from petclick.clicks.simulate import simulate_clicks

__all__ = ["simulate_clicks", "EncodeClicks", "EncodeClicksd", "encoder_from_config", "num_click_channels"]
