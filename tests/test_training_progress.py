"""petclick demo's training progress: the loop's status.json files, followed and rendered as plain
lines (CI) or a tqdm bar (a terminal)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from petclick.training.progress import STATUS, FoldStatus, read_status
from petclick.workflows.training_progress import TrainingProgress, snapshot


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _bundles(work: Path, n: int) -> list[Path]:
    out = []
    for fold in range(n):
        b = work / f"segresnet_{fold}"
        (b / "configs").mkdir(parents=True)
        out.append(b)
    return out


def test_fold_status_counts_the_whole_fold(tmp_path):
    status = FoldStatus(tmp_path, fold=3, epochs={0: 10, 1: 2, 2: 2}, iterations_per_epoch=5)
    assert status.total == 70 and status.done(1, 1) == 55
    status.update(1, 1, loss=0.5)
    data = read_status(tmp_path / STATUS)
    assert data["fold"] == 3 and data["repeat"] == 1 and data["repeats"] == 3 and data["epochs"] == 2
    assert data["iterations_done"] == 55 and data["iterations_at_start"] == 55 and data["state"] == "training"
    status.update(2, 2, loss=0.4, val_score=0.61)
    status.update(2, 2)  # the validation score stays until a new one comes
    data = read_status(tmp_path / STATUS)
    assert data["state"] == "finished" and data["val_score"] == 0.61 and data["iterations_done"] == 70
    assert read_status(tmp_path / "missing.json") is None


def _write(bundle: Path, **fields) -> None:
    (bundle / "model").mkdir(exist_ok=True)
    base = {"fold": 0, "repeat": 0, "repeats": 4, "epoch": 1, "epochs": 10, "iterations_done": 10,
            "iterations_total": 100, "iterations_at_start": 0, "elapsed_s": 5.0, "loss": 1.2, "val_score": None,
            "state": "training"}
    (bundle / "model" / STATUS).write_text(json.dumps({**base, **fields}))


def test_snapshot_estimates_unstarted_folds_and_time_left(tmp_path):
    b = _bundles(tmp_path, 3)
    assert snapshot(tmp_path).total is None and snapshot(tmp_path).folds == 3
    _write(b[0], iterations_done=100, elapsed_s=50.0, state="finished")
    _write(b[1], fold=1, iterations_done=20, elapsed_s=10.0, repeat=1, val_score=0.4)
    s = snapshot(tmp_path)
    assert s.started == 2 and s.done == 120 and s.total == 300   # the third fold estimated as 100
    assert abs(s.rate - 2.0) < 1e-9 and abs(s.seconds_left - 90.0) < 1e-9


def test_plain_lines_name_fold_repeat_loss_validation_and_time_left(tmp_path):
    b = _bundles(tmp_path, 2)
    out = io.StringIO()
    progress = TrainingProgress(tmp_path, stream=out, every_s=3600)
    progress.show()
    assert out.getvalue() == ""                                  # nothing started yet: nothing to say
    _write(b[0], repeat=1, epoch=3, loss=0.812, val_score=0.523, iterations_done=50, elapsed_s=25.0)
    progress.show()
    progress.show()                                              # same fold and repeat, too soon: no new line
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "fold 1/2 repeat 2/4 epoch 3/10" in lines[0] and "loss 0.812" in lines[0] and "validation 0.523" in lines[0]
    assert "25% of 200 iterations" in lines[0] and "about 1:15 left" in lines[0]   # 150 iterations at 2 it/s
    _write(b[1], fold=1, repeat=0, epoch=1, iterations_done=10, elapsed_s=5.0)
    progress.show()                                              # a new fold: a new line at once
    assert len(out.getvalue().splitlines()) == 2 and "fold 2/2 repeat 1/4" in out.getvalue().splitlines()[-1]


def test_terminal_gets_a_tqdm_bar_and_the_thread_stops_cleanly(tmp_path):
    b = _bundles(tmp_path, 2)
    _write(b[0], iterations_done=40, val_score=0.5)
    out = _Tty()
    with TrainingProgress(tmp_path, stream=out, interval_s=0.01) as progress:
        assert progress.tty
    text = out.getvalue()
    assert "training" in text and "40/200" in text and "fold 1/2 repeat 1/4 epoch 1/10" in text and "\r" in text
    assert progress.lines == 0                                   # no plain lines on a terminal
