"""`petclick predict` and `petclick interactive` under torchrun: 2 CPU processes (gloo), each rank its
share of the cases, one merged report equal to a single-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from petclick.cli import main
from petclick.io.clickfile import Clicks, write_clicks
from petclick.io.images import load_volume, save_volume
from petclick.metrics.report import read_cases_csv

SHAPE = (16, 16, 12)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_cohort")
    rng = np.random.default_rng(5)
    entries = []
    for n in range(5):
        case = f"fdg_d{n}_2020"
        pet = np.ones(SHAPE, np.float32) + rng.random(SHAPE, dtype=np.float32)
        label = np.zeros(SHAPE, np.uint8)
        lo = rng.integers(1, 8, 3)
        pet[lo[0]:lo[0] + 4, lo[1]:lo[1] + 4, lo[2]:lo[2] + 3] = 6.0
        label[lo[0]:lo[0] + 4, lo[1]:lo[1] + 4, lo[2]:lo[2] + 3] = 1
        save_volume(root / f"{case}_0000.nii.gz", np.zeros(SHAPE, np.float32), AFFINE)
        save_volume(root / f"{case}_0001.nii.gz", pet, AFFINE)
        save_volume(root / f"{case}.nii.gz", label, AFFINE)
        write_clicks(root / f"{case}_clicks.json", Clicks([tuple(int(v) + 1 for v in lo)], [(14, 14, 10)]))
        entries.append({"image": f"{case}_0000.nii.gz", "pet": f"{case}_0001.nii.gz", "label": f"{case}.nii.gz",
                        "clicks": f"{case}_clicks.json"})
    (root / "datalist.json").write_text(json.dumps({"testing": entries}))
    return root / "datalist.json"


def torchrun(args: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "petclick", *args], check=True, env=env, capture_output=True, text=True, timeout=600)


def _normalised(record: dict, folder: str) -> dict:
    """predict.json without what differs between runs by design: run ids, timings, rank counts, folder."""
    (run,) = record["runs"].values()                       # every rank merged under one run id
    text = json.dumps({"run": {k: v for k, v in run.items() if k != "ranks"},
                       "top": {k: v for k, v in record.items() if k not in ("runs", "cases", "ranks")},
                       "cases": [{k: v for k, v in r.items() if k not in ("seconds", "run")} for r in record["cases"]]})
    return json.loads(text.replace(folder, "OUT"))


def test_predict_under_torchrun_equals_one_process(cohort, tmp_path):
    argv = ["predict", "--models", "suv-threshold", "--datalist", str(cohort), "--all-steps", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "one")]) == 0
    torchrun(argv + ["--out", str(tmp_path / "two")])
    one = json.loads((tmp_path / "one" / "predict.json").read_text())
    two = json.loads((tmp_path / "two" / "predict.json").read_text())
    assert two["ranks"] == 2 and one["ranks"] == 1 and len(two["cases"]) == 5
    assert _normalised(two, str(tmp_path / "two")) == _normalised(one, str(tmp_path / "one"))
    files = sorted(p.name for p in (tmp_path / "one").glob("*.nii.gz"))
    assert len(files) == 5 * 11 and files == sorted(p.name for p in (tmp_path / "two").glob("*.nii.gz"))
    for name in files:
        np.testing.assert_array_equal(load_volume(tmp_path / "one" / name).array, load_volume(tmp_path / "two" / name).array)


def test_interactive_under_torchrun_equals_one_process(cohort, tmp_path):
    argv = ["interactive", "--predictor", "suv-threshold", "--datalist", str(cohort), "--no-mip"]
    assert main(argv + ["--out", str(tmp_path / "one")]) == 0
    torchrun(argv + ["--out", str(tmp_path / "two")])
    assert read_cases_csv(tmp_path / "one" / "cases.csv") == read_cases_csv(tmp_path / "two" / "cases.csv")
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert one == two and one["n_evaluated"] == 5


# ---------------------------------------------------------------------------- DDP training
def _train_torchrun(bundle, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(bundle / "scripts" / "train.py"), "run",
                           f"--config_file={bundle / 'configs' / 'hyper_parameters.yaml'}", *overrides],
                          env=env, capture_output=True, text=True, timeout=300)


def test_ddp_training_trains_validates_checkpoints_and_resumes(make_bundle, tiny_cohort, tmp_path):
    """2 gloo ranks on this CPU: each trains its shard, the ranks share validation (the same score on
    both), rank 0 alone writes; a second run resumes from last.pt; the checkpoint loads and predicts."""
    import torch
    import yaml

    from petclick.inference.predictor import EnsemblePredictor
    from petclick.io.datalist import load_datalist, resolve_entry
    from petclick.io.images import load_case
    from petclick.io.clickfile import read_clicks

    bundle = make_bundle(tmp_path, algo_overrides={"segresnet": {"network": {"kwargs": {"init_filters": 4}}}},
                         overrides={"training": {"num_epochs": 2, "num_iterations_per_epoch": 2, "val_every": 2,
                                                 "val_cases": 2, "lr": 0.01},
                                    "data": {"num_workers": 0}})
    first = _train_torchrun(bundle)
    assert first.returncode == 0, first.stderr[-3000:]
    model = bundle / "model"
    repeat = model / "repeat0"
    state = torch.load(repeat / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["finished"]
    progress = yaml.safe_load((repeat / "progress.yaml").read_text())
    assert [e["epoch"] for e in progress] == [2] and progress[0]["n_cases"] == 2  # both ranks' shares gathered
    log = (model / "train.log").read_text()
    assert "world size 2" in log and log.count("validation score") == 1  # rank 0 alone logs to the file
    # resume: more epochs continue from the saved state (epoch 2), not from scratch
    second = _train_torchrun(bundle, "--training#num_epochs=3", "--training#val_every=3")
    assert second.returncode == 0, second.stderr[-3000:]
    state = torch.load(repeat / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["finished"]
    assert [e["epoch"] for e in yaml.safe_load((repeat / "progress.yaml").read_text())] == [2, 3]
    assert "resumed from" in (model / "train.log").read_text()
    # the best checkpoint loads and predicts a case on its PET grid
    entry = resolve_entry(load_datalist(tiny_cohort)["testing"][0], tiny_cohort.parent)
    case = load_case(entry["image"], entry["pet"], entry.get("label"))
    prob = EnsemblePredictor([repeat / "model.pt"]).predict(case, read_clicks(entry["clicks"]).first(2))
    assert prob.shape == case.pet.array.shape and np.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_resumes_after_one_rank_is_killed(make_bundle, tiny_cohort, tmp_path):
    """Rank 1 is SIGKILLed once the first checkpoint exists: rank 0 exits non-zero with a clear error well
    within training.dist_timeout_s (no hang), leaves only whole checkpoints; both ranks relaunched under
    torchrun resume from that checkpoint's epoch, finish, and the checkpoint loads and predicts. The ranks
    are started as torchrun starts its workers (RANK, WORLD_SIZE, MASTER_* in the environment) but without
    its agent, so that the survivor's own failure handling is what is tested, not the agent's SIGTERM."""
    import time

    import torch
    import yaml

    from petclick.inference.predictor import EnsemblePredictor
    from petclick.io.clickfile import read_clicks
    from petclick.io.datalist import load_datalist, resolve_entry
    from petclick.io.images import load_case

    timeout_s = 60
    bundle = make_bundle(tmp_path, algo_overrides={"segresnet": {"network": {"kwargs": {"init_filters": 4}}}},
                         overrides={"training": {"num_epochs": 4, "num_iterations_per_epoch": 2, "val_every": 4,
                                                 "val_cases": 2, "lr": 0.01, "dist_timeout_s": timeout_s},
                                    "data": {"num_workers": 0}})
    repeat = bundle / "model" / "repeat0"
    last = repeat / "last.pt"
    cmd = [sys.executable, str(bundle / "scripts" / "train.py"), "run",
           f"--config_file={bundle / 'configs' / 'hyper_parameters.yaml'}"]
    port = _free_port()
    env = {r: dict(os.environ, OMP_NUM_THREADS="1", RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                   LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)) for r in (0, 1)}
    ranks = [subprocess.Popen(cmd, env=env[r], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in (0, 1)]
    try:
        deadline = time.time() + 240
        while not last.is_file():
            assert all(p.poll() is None for p in ranks), ranks[0].communicate()[0][-3000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        ranks[1].kill()                                              # SIGKILL: no cleanup, no goodbye
        killed_at = time.time()
        out0 = ranks[0].communicate(timeout=timeout_s + 60)[0]
        waited = time.time() - killed_at
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
    assert ranks[1].wait() == -9
    assert ranks[0].returncode != 0 and waited < timeout_s, (waited, out0[-3000:])
    print(f"rank 0 exited with {ranks[0].returncode} {waited:.1f} s after rank 1 was killed")
    assert "rank 0 of 2: lost the other ranks" in out0 and "Relaunch every rank" in out0, out0[-3000:]
    # only whole checkpoints: no temporary file left, last.pt loads and is mid-run
    assert not [p.name for p in repeat.iterdir() if p.name.startswith(".tmp-")]
    state = torch.load(last, weights_only=True)
    at_kill = int(state["epoch"])
    assert 1 <= at_kill < 4 and not state["finished"]
    # both ranks relaunched (as AutoRunner would, under torchrun): training continues from that epoch
    again = _train_torchrun(bundle)
    assert again.returncode == 0, again.stderr[-3000:]
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 4 and state["finished"]
    assert f"resumed from {last} at epoch {at_kill}" in (bundle / "model" / "train.log").read_text()
    assert [e["epoch"] for e in yaml.safe_load((repeat / "progress.yaml").read_text())] == [4]
    entry = resolve_entry(load_datalist(tiny_cohort)["testing"][0], tiny_cohort.parent)
    case = load_case(entry["image"], entry["pet"], entry.get("label"))
    prob = EnsemblePredictor([repeat / "model.pt"]).predict(case, read_clicks(entry["clicks"]).first(2))
    assert prob.shape == case.pet.array.shape and np.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1
