"""The label server's front door: an ASGI middleware that refuses bad requests before they are read.

In order, for every HTTP request (each refusal a JSON `{"detail": "<one line>"}`):
0. browsers: the Origin and Host headers (access.BrowserPolicy; 403);
1. the request target: at most `MAX_TARGET_BYTES` (414); no control character (NUL included) in the
   decoded path or query, no '..' path segment, UTF-8 query text, at most `MAX_QUERY_FIELDS`
   fields, and no repeated id parameter (400);
2. the query's ids and names: `image`, `label`, `id` are datastore ids, `tag` and `client_id` plain
   names (limits.py; 400);
3. the endpoint: routes.py's policy (403 refused with a reason, 404 unknown, 405 wrong method; OHIF
   and its DICOMweb proxy with `dicomweb` studies only);
4. the body: a request with a body states its Content-Length (411), within the route's limit (413);
   a form route takes a form (415: a JSON body sent to /infer would otherwise be read as no
   points at all); a JSON body is read here (within the limit), and parsed only when it nests no
   deeper than limits.MAX_JSON_DEPTH (422);
5. inference requests then wait for a worker in the queue, or get a 429 when it is full
   (admission.py) before their body is read.
A refused request's body, when it states at most DRAIN_BYTES, is read and dropped before the answer
(a client still sending would otherwise see the connection reset instead of the reason).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

from petclick.workflows.label.access import BrowserPolicy
from petclick.workflows.label.admission import Admission
from petclick.workflows.label.limits import check_id, check_name, decode_json
from petclick.workflows.label.requests import LabelRequestError
from petclick.workflows.label.routes import judge

log = logging.getLogger(__name__)

MAX_TARGET_BYTES = 8192
MAX_QUERY_FIELDS = 32
ID_PARAMS = {"image": "image id", "label": "label id", "id": "image id"}
NAME_PARAMS = {"tag": "label tag", "client_id": "client_id"}
FORM_BYTES = 64 * 1024
MULTIPART_SLACK = 64 * 1024      # multipart framing around the params field of an infer request
FORM_BODIES = ("form", "params", "upload")
DRAIN_BYTES = 16 * 2**20        # the body of a refused request is read and dropped up to this size
FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


@dataclass(frozen=True)
class BodyLimits:
    """Bytes a body may have, per kind of route (routes.BODIES)."""

    params: int
    upload: int
    json: int
    form: int = FORM_BYTES

    def of(self, body: str) -> int:
        return {"none": 0, "form": self.form, "json": self.json, "params": self.params + MULTIPART_SLACK,
                "upload": self.upload}[body]


def _control(text: str) -> str | None:
    return next((c for c in text if c < " " or c == "\x7f"), None)


def check_target(scope: dict) -> None:
    """Steps 1 and 2 of the module docstring."""
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    if len(raw) + len(query) > MAX_TARGET_BYTES:
        raise LabelRequestError(414, f"request target is {len(raw) + len(query)} bytes, more than {MAX_TARGET_BYTES}")
    path = scope["path"]
    char = _control(path)
    if char is not None:
        raise LabelRequestError(400, f"request path contains a control character ({char!r})")
    if ".." in path.split("/"):
        raise LabelRequestError(400, "request path contains a '..' segment")
    try:
        fields = parse_qsl(query.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS,
                           errors="strict")
    except UnicodeDecodeError as exc:
        raise LabelRequestError(400, f"query string is not UTF-8 ({exc.reason})") from exc
    except ValueError as exc:
        raise LabelRequestError(400, f"query string has more than {MAX_QUERY_FIELDS} fields") from exc
    seen: set[str] = set()
    for name, value in fields:
        char = _control(name + value)
        if char is not None:
            raise LabelRequestError(400, f"query parameter {name[:40]!r} contains a control character ({char!r})")
        if name in ID_PARAMS or name in NAME_PARAMS:
            if name in seen:
                raise LabelRequestError(400, f"query parameter {name!r} is given more than once")
            seen.add(name)
            if value and name in ID_PARAMS:
                check_id(value, ID_PARAMS[name])
            elif value:
                check_name(value, NAME_PARAMS[name])


def _content_length(scope: dict) -> int | None:
    headers = dict(scope.get("headers") or [])
    value = headers.get(b"content-length")
    if value is None:
        return -1 if b"transfer-encoding" in headers else None
    try:
        length = int(value)
    except ValueError as exc:
        raise LabelRequestError(400, f"Content-Length {value[:20]!r} is not a number") from exc
    if length < 0:
        raise LabelRequestError(400, "Content-Length is negative")
    return length


async def respond(send: Callable[[dict], Awaitable[None]], status: int, detail: str,
                  headers: dict[str, str] | None = None) -> None:
    """A JSON {"detail": ...} answer sent straight from the middleware."""
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """The ASGI middleware (module docstring)."""

    def __init__(self, app: Any, admission: Admission, limits: BodyLimits, browsers: BrowserPolicy | None = None,
                 dicomweb: bool = False):
        self.app, self.admission, self.limits, self.dicomweb = app, admission, limits, dicomweb
        self.browsers = browsers or BrowserPolicy()

    def _checked(self, scope: dict):
        headers = dict(scope.get("headers") or [])
        host, origin = headers.get(b"host"), headers.get(b"origin")
        self.browsers.check(None if host is None else host.decode("latin-1"),
                            None if origin is None else origin.decode("latin-1"))
        check_target(scope)
        verdict = judge(scope["method"], scope["path"], self.dicomweb)
        if verdict.route is None:
            raise LabelRequestError(verdict.status, verdict.reason)
        route = verdict.route
        limit = self.limits.of(route.body)
        length = _content_length(scope)
        if length == -1:
            raise LabelRequestError(411, "a request body needs a Content-Length header")
        if length is not None and length > limit:
            what = "a body" if limit == 0 else f"more than {limit} bytes"
            raise LabelRequestError(413, f"{scope['method']} {scope['path']} takes {what}, got {length} bytes")
        if route.body in FORM_BODIES and length:
            kind = dict(scope.get("headers") or []).get(b"content-type", b"").split(b";")[0].strip().lower()
            if kind not in FORM_TYPES:
                raise LabelRequestError(415, f"{scope['method']} {scope['path']} takes a form (multipart/form-data), "
                                             f"got {kind.decode('latin-1')[:60] or 'no Content-Type'}")
        return route, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        receive = _Tracked(receive)
        try:
            route, limit = self._checked(scope)
            if route.body == "json" and scope["method"] != "OPTIONS":
                receive = await _read_json(receive, limit)
            ticket = await self.admission.enter(f"{scope['method']} {scope['path']}") if route.admitted else None
        except LabelRequestError as exc:
            log.info("refused %s %r: %d %s", scope["method"], scope["path"], exc.status, exc.detail)
            await _drain(scope, receive)
            await respond(send, exc.status, exc.detail, getattr(exc, "headers", None))
            return
        if ticket is None:
            await self.app(scope, receive, send)
            return

        async def answer(message: dict) -> None:
            if message["type"] == "http.response.start":
                ticket.release()            # computed: the worker is free while the answer is sent
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            ticket.release()


class _Tracked:
    """A receive callable that remembers whether the whole body has been read."""

    def __init__(self, receive: Callable):
        self.receive, self.done = receive, False

    async def __call__(self) -> dict:
        message = await self.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message


async def _drain(scope: dict, receive: _Tracked) -> None:
    """Read and drop the body of a refused request (at most DRAIN_BYTES), so that the client, still
    sending, reads the answer instead of a reset connection."""
    try:
        length = _content_length(scope)
    except LabelRequestError:
        return
    if receive.done or length == 0 or (length is not None and length > DRAIN_BYTES) \
            or scope["method"] in ("GET", "HEAD"):
        return
    size, more = 0, True
    while more and size <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)


async def _read_json(receive: Callable, limit: int) -> Callable:
    """Read a JSON body (at most `limit` bytes), check it (limits.decode_json) and return a receive
    that hands it to the app again."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise LabelRequestError(400, "client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise LabelRequestError(413, f"request body is more than {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    if body.strip():
        decode_json(body, "request body", limit)
    replayed = False

    async def replay() -> dict:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
