"""Reading torch files (checkpoints) with the one error rule: a missing or unreadable file is an
InputError that names it and says what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from petclick.core.errors import InputError


def load_torch_file(path: str | Path, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)` (plain types and tensors only); InputError naming the
    file when it is missing ("<what> not found") or cannot be read ("cannot read <what> (...)")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise InputError(path, f"cannot read {what} ({type(exc).__name__}: {exc})") from exc
