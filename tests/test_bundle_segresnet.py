"""The segresnet bundle as a user runs it: scripts/train.py through Fire with command-line overrides,
scripts/validate.py, and `python -m monai.bundle run inference` on the trained bundle folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def bundle(make_bundle, tmp_path_factory):
    """A bundle trained by its own scripts/train.py (1 repeat, overrides on the command line)."""
    b = make_bundle(tmp_path_factory.mktemp("bundle"))
    configs = ",".join(str(p) for p in sorted((b / "configs").glob("*.yaml")))
    _run(["scripts/train.py", "run", f"--config_file={configs}", "--training#num_epochs=2",
          "--training#num_iterations_per_epoch=1"], cwd=b)
    return b


def test_train_script_applies_overrides_and_writes_checkpoints(bundle):
    repeat = bundle / "model" / "repeat0"
    assert (repeat / "model.pt").is_file() and (repeat / "last.pt").is_file()
    progress = yaml.safe_load((repeat / "progress.yaml").read_text())
    assert progress[-1]["epoch"] == 2  # --training#num_epochs=2 beat the config's 1
    assert "repeat 0 epoch 2/2" in (bundle / "model" / "train.log").read_text()
    proc = _run(["scripts/validate.py", "run", f"--config_file={bundle / 'configs' / 'hyper_parameters.yaml'}"], cwd=bundle)
    assert "score" in proc.stdout and (bundle / "model" / "validation.yaml").is_file()


def test_monai_bundle_run_inference(bundle, tiny_cohort, tmp_path):
    from petclick.io.datalist import load_datalist, resolve_entry

    entry = resolve_entry(load_datalist(tiny_cohort)["testing"][0], tiny_cohort.parent)
    out = tmp_path / "pred"
    _run(["-m", "monai.bundle", "run", "inference", "--config_file", str(bundle / "configs" / "inference.yaml"),
          "--input_ct", entry["image"], "--input_pet", entry["pet"], "--input_clicks", entry["clicks"],
          "--k", "5", "--output_dir", str(out), "--save_prob", "true"], cwd=tmp_path)
    case = entry["case"]
    pet = nib.load(entry["pet"])
    mask, prob = nib.load(out / f"{case}.nii.gz"), nib.load(out / f"{case}_prob.nii.gz")
    for img in (mask, prob):
        assert img.shape == pet.shape and np.allclose(img.affine, pet.affine, atol=1e-5)
    m, p = np.asarray(mask.dataobj), np.asarray(prob.dataobj)
    assert m.dtype == np.uint8 and np.array_equal(m, (p >= 0.5).astype(np.uint8))
