"""Training progress a person can see while AutoRunner trains (it captures the training scripts'
output and shows it only on failure): follow every bundle's `model/status.json` (written by the
training loop after each epoch, petclick.training.progress.FoldStatus) from the calling process.

On an interactive terminal: one tqdm bar over the iterations of every fold, with fold, repeat,
epoch, loss and the latest validation score. Otherwise (CI, a log file): a plain line whenever a
fold or repeat starts or finishes, and at most every `every_s` seconds in between, with the time
left estimated from the iterations done so far.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from petclick.training.progress import STATUS, read_status


@dataclass
class Snapshot:
    """Where the training of a whole work_dir stands."""

    folds: int                     # bundles found
    started: int                   # bundles with a status
    done: int                      # iterations done, over every bundle
    total: int | None              # iterations planned (unstarted bundles estimated); None before any start
    rate: float | None             # iterations per second in the running processes
    current: dict[str, Any] | None  # the status of the bundle trained most recently

    @property
    def seconds_left(self) -> float | None:
        if not self.rate or self.total is None:
            return None
        return max(0.0, (self.total - self.done) / self.rate)


def bundle_dirs(work_dir: Path) -> list[Path]:
    """The generated bundles of a work_dir (`<algo>_<fold>` folders with configs/)."""
    return sorted(p for p in Path(work_dir).glob("*_*") if (p / "configs").is_dir())


def snapshot(work_dir: Path) -> Snapshot:
    """Read every bundle's status.json and sum them up."""
    bundles = bundle_dirs(work_dir)
    statuses = [(b, read_status(b / "model" / STATUS)) for b in bundles]
    found = [(b, s) for b, s in statuses if s]
    if not found:
        return Snapshot(len(bundles), 0, 0, None, None, None)
    done = sum(int(s["iterations_done"]) for _, s in found)
    per_fold = sum(int(s["iterations_total"]) for _, s in found) / len(found)
    total = int(round(sum(int(s["iterations_total"]) for _, s in found) + per_fold * (len(bundles) - len(found))))
    ran = sum(int(s["iterations_done"]) - int(s.get("iterations_at_start") or 0) for _, s in found)
    seconds = sum(float(s.get("elapsed_s") or 0.0) for _, s in found)
    rate = ran / seconds if ran > 0 and seconds > 0 else None
    current = max(found, key=lambda bs: (bs[0] / "model" / STATUS).stat().st_mtime)[1]
    return Snapshot(len(bundles), len(found), done, total, rate, current)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def describe(s: Snapshot) -> str:
    """fold 2/5 repeat 1/4 epoch 3/20, loss 0.81, validation 0.52"""
    c = s.current
    if c is None:
        return f"waiting for the first of {s.folds} training job(s)"
    text = (f"fold {c['fold'] + 1}/{s.folds} repeat {c['repeat'] + 1}/{c['repeats']} "
            f"epoch {c['epoch']}/{c['epochs']}")
    if c.get("loss") is not None:
        text += f", loss {c['loss']:.3f}"
    if c.get("val_score") is not None:
        text += f", validation {c['val_score']:.3f}"
    return text


class TrainingProgress:
    """A background thread that shows the training progress of `work_dir` (see module docstring).

    Use as a context manager around AutoRunner's run; `tty` None asks the stream."""

    def __init__(self, work_dir: str | Path, stream: IO[str] | None = None, interval_s: float = 1.0,
                 every_s: float = 30.0, tty: bool | None = None):
        self.work_dir = Path(work_dir)
        self.stream = stream or sys.stderr
        self.interval_s, self.every_s = float(interval_s), float(every_s)
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else bool(tty)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        self._last_key: tuple | None = None
        self._last_line = 0.0
        self.lines = 0  # plain lines written

    # -- rendering -----------------------------------------------------------------------------
    def _plain(self, s: Snapshot, force: bool = False) -> None:
        if s.current is None:
            return
        key = (s.current["fold"], s.current["repeat"], s.current["state"])
        now = time.time()
        if not force and key == self._last_key and now - self._last_line < self.every_s:
            return
        pct = f"{100.0 * s.done / s.total:.0f}%" if s.total else "?"
        self.stream.write(f"training: {describe(s)}; {pct} of {s.total} iterations, "
                          f"about {_clock(s.seconds_left)} left\n")
        self.stream.flush()
        self._last_key, self._last_line = key, now
        self.lines += 1

    def _tqdm(self, s: Snapshot) -> None:
        if s.total is None:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=s.total, unit="it", desc="training", file=self.stream, dynamic_ncols=True)
        if self._bar.total != s.total:
            self._bar.total = s.total
        self._bar.n = s.done
        self._bar.set_postfix_str(describe(s), refresh=False)
        self._bar.refresh()

    def show(self, force: bool = False) -> Snapshot:
        """Read the work_dir once and render it."""
        s = snapshot(self.work_dir)
        if self.tty:
            self._tqdm(s)
        else:
            self._plain(s, force)
        return s

    # -- thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.show()
            except OSError:  # a bundle folder replaced under our feet: try again next time
                continue

    def start(self) -> "TrainingProgress":
        self._thread = threading.Thread(target=self._run, name="petclick-training-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.show(force=True)
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "TrainingProgress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
