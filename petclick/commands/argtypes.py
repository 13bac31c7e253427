"""argparse value types shared by the subcommands: numbers with bounds, errors that say why."""

from __future__ import annotations

import argparse
from typing import Callable


def bounded(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
            message: str | None = None) -> Callable[[str], float | int]:
    """An argparse `type`: `kind` (int or float) parsed from the text, within [lo, hi] (lo excluded
    with `lo_open`); `message` (default "must be >= lo") says what a value out of range breaks."""
    word = "an integer" if kind is int else "a number"
    default = f"must be {'>' if lo_open else '>='} {lo}"

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {word}: {text!r}") from None
        if (lo is not None and (value < lo or (lo_open and value == lo))) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{message or default}, got {text}")
        return value

    return parse


#: A protocol's step count (`--steps` of evaluate and interactive): an AUC needs two steps.
steps_count = bounded(int, 2, message="an AUC needs at least 2 steps")
