"""Who may reach the label server: loopback only, or authentication, or an explicit --insecure.

The server hands out every study of its folder and accepts labels. Bound to a loopback address
(127.0.0.1, ::1, localhost: the default) only this machine reaches it. Bound to anything else
(0.0.0.0, a LAN address, a host name that resolves beyond loopback) it must either require
MONAI Label's authentication (`--auth-realm`: Keycloak tokens, docs/server.md) or be started with
`--insecure`, which logs a warning naming the address; otherwise `petclick label` refuses to start.

Browsers: MONAI Label allows every origin (CORS `*`), so any web page a reader opens could read
the studies from a server on their machine. `BrowserPolicy` lets browsers in only from the origins
given with `--allow-origin` (and pages of the server itself), and a loopback server answers only
to loopback names (a page that re-points its own name at 127.0.0.1 is refused).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from petclick.core.errors import InputError
from petclick.workflows.label.requests import LabelRequestError


def is_loopback(host: str) -> bool:
    """True when every address `host` stands for is a loopback address ('' and 0.0.0.0 are not)."""
    name = host.strip().strip("[]")
    if not name:
        return False
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except (socket.gaierror, UnicodeError):
        return False
    addresses = {info[4][0].split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_exposure(host: str, port: int, auth: bool, insecure: bool) -> str | None:
    """None when `host` is loopback or authentication is on; the warning to log when `insecure`
    allows an unauthenticated server beyond loopback; else an InputError (module docstring)."""
    if auth or is_loopback(host):
        return None
    address = f"{host}:{port}"
    if insecure:
        return (f"petclick label: serving WITHOUT authentication on {address} (--insecure): anyone who can reach "
                f"this address can read every study of the folder and submit labels")
    raise InputError("--host", f"{address} is reachable beyond this machine and the server has no authentication: "
                               "add --auth-realm URL (Keycloak, docs/server.md), put it behind an authenticating "
                               "reverse proxy on 127.0.0.1, or pass --insecure to serve anyway")


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of an allowed origin (an InputError for anything else)."""
    parts = urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise InputError("--allow-origin", f"{url!r} is not an origin (scheme://host[:port], e.g. "
                                           "https://ohif.example.org)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _host_name(host: str) -> str:
    """The name of a Host header value or an origin's netloc, without the port (IPv6 unbracketed)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class BrowserPolicy:
    """What a web browser may do with the server: read it from the allowed origins only (CORS and the
    Origin header), and reach a loopback server only by a loopback name (the Host header: a page
    whose name was re-pointed at 127.0.0.1, DNS rebinding, is refused). Clients that are no browser
    (Slicer) send neither header to check."""

    def __init__(self, allowed_origins: tuple[str, ...] = (), loopback_only: bool = True):
        self.allowed = tuple(origin_of(o) for o in allowed_origins)
        self.loopback_only = loopback_only
        self.hosts = {_host_name(urlsplit(o).netloc) for o in self.allowed}

    def trusted_host(self, host: str) -> bool:
        name = _host_name(host)
        if name in self.hosts or name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def check(self, host: str | None, origin: str | None) -> None:
        """A 403 (LabelRequestError) for a request the policy refuses."""
        if host and self.loopback_only and not self.trusted_host(host):
            raise LabelRequestError(403, f"Host {host[:80]!r} is not this machine: the server answers on loopback "
                                         "names (list another with --allow-origin)")
        if origin is None or origin.lower().rstrip("/") in self.allowed:
            return
        netloc = urlsplit(origin).netloc.lower()
        if host and netloc and netloc == host.strip().lower():
            return                                     # a page of this server itself
        raise LabelRequestError(403, f"cross-origin request from {origin[:80]!r} refused (allow an origin with "
                                     "--allow-origin)")
