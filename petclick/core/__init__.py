"""The base layer: errors, YAML utilities and array geometry helpers that every other layer uses.
Imports nothing from petclick outside core."""
