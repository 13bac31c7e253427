"""Click logic: official-compatible simulation, training curricula, error-driven clicks, encodings, geometry."""

from petclick.clicks.simulate import simulate_clicks

__all__ = ["simulate_clicks"]
