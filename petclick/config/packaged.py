"""Where the files petclick ships as package data are: the Auto3DSeg templates (petclick/bundles/)
and the AutoRunner input template of the embedded phantom cohort (petclick/bundles/input.yaml).

They are the one copy: the repository's top-level `input.yaml` is a link to the template, and an
installed petclick (`pip install .`, no source tree) finds both here."""

from __future__ import annotations

from pathlib import Path

#: The Auto3DSeg algorithm templates (`templates_path_or_url` of AutoRunner): segresnet, dints, swinunetr.
BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
#: The AutoRunner input template of the embedded phantom cohort (preset demo).
INPUT_TEMPLATE = BUNDLES / "input.yaml"


def bundle_names() -> list[str]:
    """The shipped templates (folders with scripts/algo.py), sorted."""
    return sorted(p.parent.parent.name for p in BUNDLES.glob("*/scripts/algo.py"))
