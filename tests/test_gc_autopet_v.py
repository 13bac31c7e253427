"""`petclick gc --protocol autopet-v`: one fresh process per corrective step, state kept between them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from petclick.cli import main
from petclick.clicks.scribbles import add_scribble, scribble_step
from petclick.core.errors import InputError
from petclick.inference.session import STATE_FILE
from petclick.io.clickfile import Clicks, read_click_file, write_clicks
from petclick.io.sitk import load_mha, save_mha
from petclick.phantoms import generate_case
from petclick.workflows.gc import GcCase, read_job_clicks

UUID = "case_0b1c2d3e"
OUT = Path("images/tumor-lesion-segmentation") / f"{UUID}.mha"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def phantom():
    return generate_case("fdg_gcv_01", 4, shape=(32, 28, 40), tracer="fdg", clicks=False)


def write_input(root: Path, ph, scribbles: Clicks) -> None:
    save_mha(root / "images" / "ct" / f"{UUID}.mha", ph.ct, affine=ph.affine)
    save_mha(root / "images" / "pet" / f"{UUID}.mha", ph.pet, affine=ph.affine)
    write_clicks(root / "lesion-clicks.json", scribbles, "gc")


def gc_process(inp: Path, out: Path, models: str, state: Path | None = None) -> np.ndarray:
    """One container run: a fresh python process, the state folder from the environment."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if state is not None:
        env["PETCLICK_STATE_DIR"] = str(state)
    subprocess.run([sys.executable, "-m", "petclick", "gc", "--protocol", "autopet-v", "--input", str(inp),
                    "--output", str(out), "--models", models], check=True, capture_output=True, text=True, env=env)
    return load_mha(out / OUT).array


def run_loop(tmp: Path, ph, models: str, n_steps: int, state: Path | None, fresh_process: bool = True):
    """The official loop: step 0 without scribbles, then one stroke per step from the previous output."""
    label = ph.label != 0
    scribbles, masks, sets = Clicks(), [], []
    for k in range(n_steps):
        inp, out = tmp / f"in{k}", tmp / f"out{k}"
        write_input(inp, ph, scribbles)
        if fresh_process:
            masks.append(gc_process(inp, out, models, state))
        else:
            args = ["gc", "--protocol", "autopet-v", "--input", str(inp), "--output", str(out), "--models", models]
            assert main(args + (["--state", str(state)] if state else [])) == 0
            masks.append(load_mha(out / OUT).array)
        sets.append(scribbles)
        scribbles = add_scribble(scribbles, scribble_step(masks[-1], label, "random"))
    return masks, sets


@pytest.mark.parametrize("which", ["suv-threshold", "model"])
def test_gc_autopet_v_steps_as_separate_processes_keep_state_and_reruns_repeat(tmp_path, phantom, tiny_model, which):
    models = "suv-threshold" if which == "suv-threshold" else str(tiny_model)
    n = 3 if which == "suv-threshold" else 2
    state = tmp_path / "state"
    masks, sets = run_loop(tmp_path / "stateful", phantom, models, n, state)
    assert sum(len(s.tumor) + len(s.background) for s in sets[1:]) > 0        # scribbles reached the container
    (folder,) = [p for p in state.iterdir() if p.is_dir()]
    saved = json.loads((folder / STATE_FILE).read_text())
    assert len(saved["history"]) == n                                         # one session step per run
    assert saved["last_clicks"] == sets[-1].to_dict()
    # the same steps predicted from scratch (no state, in this process) give the same masks
    fresh, _ = run_loop(tmp_path / "stateless", phantom, models, n, None, fresh_process=False)
    for a, b in zip(masks, fresh):
        np.testing.assert_array_equal(a, b)
    # a rerun of the last step: the same output, and the session did not take another step
    again = gc_process(tmp_path / "stateful" / f"in{n - 1}", tmp_path / "rerun", models, state)
    np.testing.assert_array_equal(again, masks[-1])
    assert len(json.loads((folder / STATE_FILE).read_text())["history"]) == n


def test_gc_autopet_v_reads_hundreds_of_scribble_voxels(tmp_path, phantom):
    lesion = [tuple(int(v) for v in p) for p in np.argwhere(phantom.pet > 1.0)[:300]]   # 300 stroke-like voxels
    assert len(lesion) == 300
    write_input(tmp_path / "in", phantom, Clicks(lesion, []))
    assert main(["gc", "--protocol", "autopet-v", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"),
                 "--models", "suv-threshold"]) == 0
    report = json.loads((tmp_path / "o" / "petclick-input-report.json").read_text())["jobs"][0]
    assert report["n_tumor_clicks"] == len(lesion) and report["dropped"] == []
    # autopet-iv keeps its budget of 10: the lenient container keeps the first 10
    assert main(["gc", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o4"),
                 "--models", "suv-threshold"]) == 0
    assert json.loads((tmp_path / "o4" / "petclick-input-report.json").read_text())["jobs"][0]["n_tumor_clicks"] == 10


def test_malformed_scribble_json_is_an_input_error_naming_the_file(tmp_path, phantom):
    path = tmp_path / "lesion-clicks.json"
    points = [{"point": [i, 3, 4], "name": "tumor"} for i in range(300)] + [{"point": [1, 2], "name": "background"}]
    path.write_text(json.dumps({"version": {"major": 1, "minor": 0}, "type": "Multiple points", "points": points}))
    with pytest.raises(InputError, match="lesion-clicks.json") as err:
        read_click_file(path, "strict")
    assert "2 coordinates" in str(err.value)
    path.write_text('{"type": "Multiple points", "points": [{"point": [1, 2, 3], "name": "tumor"}')
    with pytest.raises(InputError, match="lesion-clicks.json.*malformed JSON"):
        read_click_file(path, "strict")
    # the container never fails a step over its file: step without scribbles, the error in its report
    clicks, report = read_job_clicks(GcCase(UUID, path, path, path), phantom.pet.shape, "lenient", None)
    assert clicks == Clicks() and "lesion-clicks.json" in report["error"]
