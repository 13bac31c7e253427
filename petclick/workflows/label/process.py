"""A `petclick label` server in a subprocess: started on a free loopback port, waited for, stopped.

What the tests and benchmarks/bench_label.py use (and a script driving the server can): the server
runs in its own process group, its output goes to a log file, it is up when GET /info/ answers
(200, or a status of `ready_status`: 401 with authentication on), and it stops on SIGINT (SIGKILL
after `stop_timeout_s`). Standard library only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (bound once and released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until_up(proc: subprocess.Popen, url: str, timeout_s: float, name: str,
                  ready_status: Sequence[int] = (200,)) -> None:
    """Poll `url` until it answers a status of `ready_status` (e.g. 401: up, with authentication on);
    RuntimeError when `proc` exits first or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status in ready_status:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ready_status:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not answering after {timeout_s:g} s")
        time.sleep(0.3)


def stop_group(proc: subprocess.Popen, sig: int, timeout_s: float) -> None:
    """Send `sig` to the process group of `proc` (started with start_new_session) and wait; SIGKILL
    after `timeout_s`."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class LabelServerProcess:
    """`petclick label --studies ... --models ... --port P [extra]` until `stop()` (or `with` exits)."""

    def __init__(self, studies: str | Path, models: Sequence[str | Path], log: str | Path,
                 extra: Sequence[str] = (), env: dict[str, str] | None = None, start_timeout_s: float = 300,
                 stop_timeout_s: float = 60, host: str = "127.0.0.1", ready_status: Sequence[int] = (200,)):
        self.port, self.log = free_port(host), Path(log)
        self.url = f"http://{host}:{self.port}"
        self.stop_timeout_s, self.ready_status = stop_timeout_s, tuple(ready_status)
        cmd = [sys.executable, "-m", "petclick.cli", "label", "--studies", str(studies), "--models",
               *[str(m) for m in models], "--host", host, "--port", str(self.port), *extra]
        t0 = time.perf_counter()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **(env or {})})
        self._wait(start_timeout_s)
        self.start_seconds = time.perf_counter() - t0

    def _wait(self, timeout_s: float) -> None:
        try:
            wait_until_up(self.proc, f"{self.url}/info/", timeout_s, "petclick label", self.ready_status)
        except RuntimeError as exc:
            if self.proc.poll() is None:
                self.stop()
            raise RuntimeError(f"{exc}:\n{self.tail()}") from None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def stop(self) -> int:
        """Interrupt the server (its whole process group) and wait; returns its exit status."""
        stop_group(self.proc, signal.SIGINT, self.stop_timeout_s)
        return int(self.proc.returncode)

    def __enter__(self) -> "LabelServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
