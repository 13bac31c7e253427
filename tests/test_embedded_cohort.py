"""The committed datalist.json and input.yaml describe exactly the cohort `petclick demo` generates."""

import json
from pathlib import Path

import yaml

from petclick.workflows.demo import DEMO_COHORT
from petclick.phantoms import generate_cohort

REPO = Path(__file__).resolve().parent.parent


def test_committed_datalist_matches_the_generated_demo_cohort(tmp_path):
    written = generate_cohort(tmp_path / "phantoms", cases=DEMO_COHORT["cases"], seed=DEMO_COHORT["seed"],
                              shape=tuple(DEMO_COHORT["shape"]))
    generated = json.loads(Path(written).read_text())
    committed = json.loads((REPO / "datalist.json").read_text())
    assert committed["training"] == generated["training"]
    assert committed["testing"] == generated["testing"]
    assert len(committed["training"]) + len(committed["testing"]) == DEMO_COHORT["cases"]


def test_input_yaml_points_at_the_embedded_cohort_and_bundles():
    cfg = yaml.safe_load((REPO / "input.yaml").read_text())
    assert cfg["datalist"] == "./datalist.json" and cfg["dataroot"] == "./phantoms"
    assert cfg["templates_path_or_url"] == "./petclick/bundles" and cfg["preset"] == "demo"
    assert cfg["sigmoid"] is True and cfg["num_fold"] == 5 and cfg["num_repeats"] == 4
    assert (REPO / cfg["templates_path_or_url"] / "segresnet" / "scripts" / "algo.py").is_file()


def test_one_copy_of_the_bundles_and_the_input_template():
    """The repository's input.yaml is petclick's packaged template (a link), and the templates exist
    only inside the package."""
    from petclick.config.packaged import BUNDLES, INPUT_TEMPLATE, bundle_names

    assert (REPO / "input.yaml").resolve() == INPUT_TEMPLATE.resolve()
    assert BUNDLES.resolve() == (REPO / "petclick" / "bundles").resolve()
    assert bundle_names() == ["dints", "segresnet", "swinunetr"]
    assert not (REPO / "bundles").exists()
