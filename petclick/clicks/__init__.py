"""Click logic: official-compatible simulation, training curricula, error-driven clicks, encodings, geometry."""

from petclick.clicks.error_driven import next_error_click, next_error_clicks
from petclick.clicks.simulate import simulate_clicks

__all__ = ["simulate_clicks", "next_error_clicks", "next_error_click"]
