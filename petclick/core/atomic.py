"""Atomic file output: write under a temporary name in the same folder, then rename.

`os.replace` within one folder is atomic on POSIX and Windows, so a reader (or a run killed with
SIGKILL midway) sees either no file / the previous file, or the complete new one, never a 0-byte or
truncated file under the final name. Temporary names start with TEMP_PREFIX and keep the final name
as their end (`.tmp-1a2b3c4d-case.nii.gz`), so libraries that choose the format by suffix (nibabel,
SimpleITK, matplotlib) write the right one; file discovery skips them (`is_temp_name`). A run
killed mid-write can leave such a dot-file behind, never a broken file under the final name.

It lives in core (the lowest layer) because writers in every layer use it, core's YAML writer too;
`petclick.io` re-exports it.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

TEMP_PREFIX = ".tmp-"


def is_temp_name(name: str | Path) -> bool:
    """True for the temporary names of atomic writes (skip them when listing outputs)."""
    return Path(name).name.startswith(TEMP_PREFIX)


def temp_name(path: str | Path) -> Path:
    """A fresh temporary path beside `path`, ending in `path`'s own name."""
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{path.name}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to; on success it is renamed onto `path`,
    on any exception it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write of {path}: nothing was written to {tmp.name}")
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """`open(path, mode)` whose content appears under `path` only once the block has completed."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes new files; mode must start with 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_open(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)
