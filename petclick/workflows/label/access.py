"""Who may reach the label server: loopback only, or authentication, or an explicit --insecure.

The server hands out every study of its folder and accepts labels. Bound to a loopback address
(127.0.0.1, ::1, localhost: the default) only this machine reaches it. Bound to anything else
(0.0.0.0, a LAN address, a host name that resolves beyond loopback) it must either require
MONAI Label's authentication (`--auth-realm`: Keycloak tokens, docs/server.md) or be started with
`--insecure`, which logs a warning naming the address; otherwise `petclick label` refuses to start.
"""

from __future__ import annotations

import ipaddress
import socket

from petclick.core.errors import InputError


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
