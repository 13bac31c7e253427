"""Reading JSON that users write, without crashes and without silent loss.

Python's `json` keeps the last of repeated keys, turns NaN/Infinity into floats, raises
RecursionError on deep nesting and decodes UTF-16 only when asked. `read_json` instead:
- refuses files over a size limit before reading them (own message);
- decodes UTF-8 (a UTF-8 byte-order mark is ignored) and UTF-16/32 (with or without a BOM), and
  says which in `notes` so the caller can warn;
- keeps every value of a repeated key: objects decode to `JsonObject` (a dict holding the first
  value) whose `duplicates` maps each repeated key to all its values in file order;
- decodes NaN, Infinity, -Infinity, numbers that overflow a float and integers of more than
  `MAX_INT_DIGITS` digits to `BadNumber` markers, so the caller can name the entry;
- turns too-deep nesting, malformed JSON and undecodable bytes into InputError naming the file.
`require_plain(data, source)` raises on the first repeated key or bad number anywhere (datalists).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from petclick.core.errors import InputError

MAX_INT_DIGITS = 18
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig", "a UTF-8 byte-order mark (ignored)"),
         (b"\xff\xfe\x00\x00", "utf-32", "UTF-32 text with a byte-order mark (decoded; JSON should be UTF-8)"),
         (b"\x00\x00\xfe\xff", "utf-32", "UTF-32 text with a byte-order mark (decoded; JSON should be UTF-8)"),
         (b"\xff\xfe", "utf-16", "UTF-16 text with a byte-order mark (decoded; JSON should be UTF-8)"),
         (b"\xfe\xff", "utf-16", "UTF-16 text with a byte-order mark (decoded; JSON should be UTF-8)"))


@dataclass(frozen=True)
class BadNumber:
    """A JSON number petclick cannot use: its text as written (NaN, Infinity, 1e999, 10**40)."""

    text: str

    def __repr__(self) -> str:
        return self.text


class JsonObject(dict):
    """A decoded JSON object: the first value of each key, plus every value of repeated keys."""

    duplicates: dict[str, list]

    def __init__(self, pairs=()):
        super().__init__()
        self.duplicates = {}
        for key, value in pairs:
            if key in self:
                self.duplicates.setdefault(key, [self[key]]).append(value)
            else:
                self[key] = value


def _float(text: str):
    value = float(text)
    return value if math.isfinite(value) else BadNumber(text)


def _int(text: str):
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else BadNumber(text)


def _decode_text(raw: bytes, source: Path) -> tuple[str, list[str]]:
    for bom, codec, note in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec), [f"starts with {note}"]
            except UnicodeDecodeError as exc:
                raise InputError(source, f"starts with a {codec.upper()} byte-order mark but is not valid "
                                         f"{codec.upper()} ({exc.reason} at byte {exc.start})") from None
    codec = json.detect_encoding(raw) if raw else "utf-8"
    notes = [] if codec == "utf-8" else [f"is {codec.upper()} text without a byte-order mark (decoded; JSON should be UTF-8)"]
    try:
        return raw.decode(codec), notes
    except UnicodeDecodeError as exc:
        raise InputError(source, f"is not valid {codec.upper()} text ({exc.reason}: byte "
                                 f"0x{raw[exc.start]:02x} at offset {exc.start})") from None


def decode_json(raw: bytes, source: str | Path) -> tuple[Any, list[str]]:
    """(decoded value, notes on the encoding) of JSON bytes; empty text decodes to `...` (Ellipsis)."""
    source = Path(source)
    text, notes = _decode_text(raw, source)
    if not text.strip():
        return ..., notes
    try:
        value = json.loads(text, object_pairs_hook=JsonObject, parse_float=_float, parse_int=_int,
                           parse_constant=BadNumber)
    except RecursionError:
        raise InputError(source, "JSON nested too deeply to read (thousands of levels; a click file or "
                                 "datalist has a handful)") from None
    except json.JSONDecodeError as exc:
        raise InputError(source, f"malformed JSON ({exc})") from None
    except ValueError as exc:  # e.g. an integer with too many digits for Python's int parser
        raise InputError(source, f"malformed JSON ({exc})") from None
    return value, notes


def read_json(path: str | Path, max_bytes: int, what: str = "JSON file") -> tuple[Any, list[str]]:
    """Decode the JSON file at `path` (see the module docstring); a missing file or one over
    `max_bytes` raises InputError naming it. Empty files decode to `...` (Ellipsis)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(path, f"{what} is {size:,} bytes, over the limit of {max_bytes:,} bytes")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the {what} ({exc.strerror})") from None
    return decode_json(raw, path)


def require_plain(data: Any, source: str | Path) -> Any:
    """`data` when it holds no repeated key and no BadNumber anywhere; else InputError naming the place."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, BadNumber):
            raise InputError(source, f"{where or 'value'}: {value.text} is not a finite number")
        if isinstance(value, dict):
            for key, values in getattr(value, "duplicates", {}).items():
                raise InputError(source, f"{where}{'.' if where else ''}{key}: key repeated {len(values)} times "
                                         "(JSON readers keep only one of them)")
            stack.extend((v, f"{where}{'.' if where else ''}{k}") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{n}]") for n, v in enumerate(value))
    return data
