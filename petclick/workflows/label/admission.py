"""How many requests the label server computes at once, how many may wait, and the 429 past that.

`workers` requests run at once (each in its own thread, on its own session: sessions.py); up to
`queue` more wait for a worker, in arrival order; a request arriving when all workers are busy and
the queue is full is refused at once with 429 and a `Retry-After`, before its body is read. The
counters (running, queued, the most ever queued, served, refused) are what `/info/` shows under
`petclick`. Used from the server's event loop only (guard.py), so no thread lock is needed.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

from petclick.workflows.label.requests import LabelRequestError

RETRY_AFTER_S = 5


class Busy(LabelRequestError):
    """Every worker busy and the queue full: 429 with a Retry-After."""

    def __init__(self, detail: str):
        super().__init__(429, detail)
        self.headers = {"Retry-After": str(RETRY_AFTER_S)}


class Admission:
    """`workers` slots and a queue of `queue` waiting requests (module docstring)."""

    def __init__(self, workers: int, queue: int):
        if workers < 1 or queue < 0:
            raise ValueError(f"workers must be >= 1 and queue >= 0, got {workers} and {queue}")
        self.workers, self.queue = int(workers), int(queue)
        self.running = self.queued = self.peak_queued = 0
        self.served = self.refused = 0
        self._slots: asyncio.Semaphore | None = None      # made in the event loop that uses it

    async def enter(self, what: str = "request") -> "Ticket":
        """Wait in the queue for a worker (raises Busy when it is full); the ticket frees the worker."""
        if self.running + self.queued >= self.workers + self.queue:
            self.refused += 1
            raise Busy(f"server busy: {self.running} request(s) computing, {self.queued} waiting (at most "
                       f"{self.workers} and {self.queue}); {what} refused, retry in {RETRY_AFTER_S} s")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        self.queued += 1
        if self._slots.locked():            # it has to wait
            self.peak_queued = max(self.peak_queued, self.queued)
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1                # served now, or cancelled while waiting
        self.running += 1
        return Ticket(self)

    def _leave(self) -> None:
        self.running -= 1
        self.served += 1
        self._slots.release()

    @asynccontextmanager
    async def slot(self, what: str = "request") -> AsyncIterator[None]:
        """Hold a worker for the block (enter, then release at its end)."""
        ticket = await self.enter(what)
        try:
            yield
        finally:
            ticket.release()

    def status(self) -> dict[str, int]:
        return {"workers": self.workers, "queue_limit": self.queue, "running": self.running, "queued": self.queued,
                "peak_queued": self.peak_queued, "served": self.served, "refused_busy": self.refused}


class Ticket:
    """A worker held by one request; `release` (idempotent) frees it: once the answer starts, so
    that a client's next request never finds its own previous one still counted."""

    def __init__(self, admission: Admission):
        self.admission, self.held = admission, True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.admission._leave()
