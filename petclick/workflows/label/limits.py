"""What a request to the label server may carry: ids, names, JSON text and its size and depth.

Every check raises LabelRequestError with a 4xx status and one line naming the value and the
rule, so a hostile or broken request is refused before MONAI Label or the session sees it:

- an id (image, label; query parameters) is a datastore id: at most 255 characters, none of
  them a control character (NUL included), '/', '\\' or ':', and no '..' (400). MONAI Label
  would take a server path as an "image"; ids name datastore entries only;
- a name (a label tag, a reader's client id) is letters, digits, '.', '-', '_' and '@', at most
  128 characters (400 for a query parameter, 422 inside params);
- JSON text (the `params` form field, a JSON body) is at most `max_bytes` long (413) and nested at
  most `MAX_JSON_DEPTH` deep (422): Python's parser raises RecursionError on deep nesting, which
  MONAI Label answers with a 500;
- params must be a JSON object and may not set MONAI Label's own request keys (`RESERVED_PARAMS`:
  they choose which file is read and where a label is written), 422.

`reader_for` says whose session a request works on: the authenticated user, else the client id
the client sends (Slicer's settings, the reader page's per-tab id), else `ANONYMOUS`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from petclick.workflows.label.requests import LabelRequestError

MAX_ID_CHARS = 255
MAX_NAME_CHARS = 128
MAX_JSON_DEPTH = 32
#: request keys MONAI Label reads after merging params into the request (image and model chosen,
#: label saved and where, the task's time limit) and the reader key the server itself sets
READER_KEY = "petclick_reader"
ANONYMOUS = "anonymous"
RESERVED_PARAMS = ("image", "image_id", "model", "session", "save_label", "label_tag", "timeout", "description",
                   READER_KEY)
_ID_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\:]")
_NAME = re.compile(r"[A-Za-z0-9._@-]+")


def _shown(value: str, limit: int = 60) -> str:
    """A value as it may appear in a one-line message (escaped, shortened)."""
    return repr(value[:limit] + ("..." if len(value) > limit else ""))


def check_id(value: str, what: str = "image id") -> str:
    """`value` if it can name a datastore entry (module docstring), else a 400."""
    if not value:
        raise LabelRequestError(400, f"{what} is empty")
    if len(value) > MAX_ID_CHARS:
        raise LabelRequestError(400, f"{what} {_shown(value)} is longer than {MAX_ID_CHARS} characters")
    bad = _ID_FORBIDDEN.search(value)
    if bad:
        char = bad.group()
        kind = "a control character" if char < " " or char == "\x7f" else "a path separator" if char in "/\\" \
            else "a drive separator"
        raise LabelRequestError(400, f"{what} {_shown(value)} contains {kind} ({char!r}): ids name datastore "
                                     "entries, not files")
    if ".." in value:
        raise LabelRequestError(400, f"{what} {_shown(value)} contains '..': ids name datastore entries, not files")
    return value


def check_name(value: Any, what: str, status: int = 400) -> str:
    """`value` if it is a plain name (module docstring), else `status`."""
    if not isinstance(value, str) or not value:
        raise LabelRequestError(status, f"{what} must be a non-empty string, got {type(value).__name__}")
    if len(value) > MAX_NAME_CHARS or not _NAME.fullmatch(value) or ".." in value:
        raise LabelRequestError(status, f"{what} {_shown(value)} must be at most {MAX_NAME_CHARS} letters, digits, "
                                        "'.', '-', '_' or '@' (no '..')")
    return value


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON `text` (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:                      # one linear pass (a regex over strings can backtrack quadratically)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def decode_json(text: str | bytes, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON `text` parsed, after checking its size (413) and nesting (422); invalid JSON is a 422."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > max_bytes:
        raise LabelRequestError(413, f"{what} is {size} bytes, more than the limit of {max_bytes} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LabelRequestError(422, f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    depth = json_depth(text)
    if depth > max_depth:
        raise LabelRequestError(422, f"{what} nests {depth} levels deep, more than the limit of {max_depth}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LabelRequestError(422, f"{what} is not valid JSON ({first})") from exc


def decode_params(text: str | None, max_bytes: int) -> dict:
    """The `params` form field of an infer request as a JSON object (module docstring)."""
    value = decode_json(text, "params", max_bytes) if text and text.strip() else {}
    if not isinstance(value, dict):
        raise LabelRequestError(422, f"params must be a JSON object, got {type(value).__name__}")
    reserved = [k for k in RESERVED_PARAMS if k in value]
    if reserved:
        raise LabelRequestError(422, f"params may not set {', '.join(map(repr, reserved))}: the server's own request "
                                     "keys (the image comes from ?image=, the model from the path)")
    return value


def reader_for(username: str | None, client_id: Any, what: str = "params client_id", status: int = 422) -> str:
    """Whose session a request works on (module docstring); `username` is None without
    authentication, and a client id that is no plain name is a `status` error naming `what`."""
    if username is not None:
        return username
    return ANONYMOUS if client_id in (None, "") else check_name(client_id, what, status)
