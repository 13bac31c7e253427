"""Configuration: the `demo`/`autopet` presets (every default stated once), the registry of known
keys and their rules (schema.py), the bundle config files a bundle script receives, merged and
validated into one BundleConfig (bundle.py), and where the packaged templates are (packaged.py).
Sits on core only."""
