"""Configuration: the `demo`/`autopet` presets (every default stated once) and the bundle config
files a bundle script receives (petclick.config.bundle). Sits on core only."""
