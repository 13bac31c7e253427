"""Errors that petclick raises for bad input: each names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class PetclickError(Exception):
    """Base class of every error petclick reports to a user (the CLI prints it without a traceback)."""


class InputError(PetclickError, ValueError):
    """Bad input data: the message says which file (or item) and what is wrong with it."""

    def __init__(self, source: str | Path | None, problem: str):
        self.source = None if source is None else str(source)
        self.problem = problem
        super().__init__(problem if source is None else f"{source}: {problem}")
