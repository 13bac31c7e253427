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
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"petclick label exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/info/", timeout=5) as r:
                    if r.status in self.ready_status:
                        return
            except urllib.error.HTTPError as exc:          # e.g. 401: up, with authentication on
                if exc.code in self.ready_status:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"petclick label not answering after {timeout_s:g} s:\n{self.tail()}")
            time.sleep(0.3)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def stop(self) -> int:
        """Interrupt the server (its whole process group) and wait; returns its exit status."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return int(self.proc.returncode)

    def __enter__(self) -> "LabelServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
