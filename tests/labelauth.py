"""A tiny Keycloak stand-in for the label server's authentication tests: one realm on loopback.

It answers what MONAI Label asks a Keycloak realm (monailabel.endpoints.user.auth, login.py):
- GET  <realm>                                   -> {"realm", "public_key": base64 DER of its RSA key}
- GET  <realm>/.well-known/openid-configuration  -> {"issuer", "token_endpoint"}
- POST <realm>/protocol/openid-connect/token     -> password grant: {"access_token", "token_type", ...},
                                                    401 {"error": "invalid_grant"} for a wrong password
Tokens are RS256 JWTs with Keycloak's claims (preferred_username, email, name, realm_access.roles).
`token()` also signs tokens directly (expired, another key, HS256 with the public key as secret)
for the tests that must be refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REALM = "/realms/petclick"
USER_ROLE, ANNOTATOR_ROLE = "monailabel-user", "monailabel-annotator"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class TokenIssuer:
    """The realm above on 127.0.0.1 (a daemon thread) until `stop()`; `users`: name -> (password, roles)."""

    def __init__(self, users: dict[str, tuple[str, list[str]]]):
        self.users, self.key = users, new_key()
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_b64 = base64.b64encode(der).decode()
        self.public_pem = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}{REALM}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def claims(self, username: str, roles: list[str] | None = None, expires_in: float = 600) -> dict:
        now = int(time.time())
        return {"preferred_username": username, "email": f"{username}@example.org", "name": username.title(),
                "realm_access": {"roles": list(roles if roles is not None else self.users[username][1])},
                "iat": now, "exp": int(now + expires_in), "iss": self.realm}

    def token(self, username: str, roles: list[str] | None = None, key=None, expires_in: float = 600) -> str:
        """An RS256 token of `username` (signed by the realm's key unless `key` is given)."""
        return jwt.encode(self.claims(username, roles, expires_in), key if key is not None else self.key,
                          algorithm="RS256")

    def hmac_token(self, username: str) -> str:
        """The algorithm-confusion forgery: HS256 signed with the realm's public key as the secret
        (PyJWT will not make one, so it is assembled here)."""
        def part(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = part(json.dumps(self.claims(username)).encode())
        signature = hmac.new(self.public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{part(signature)}"

    def _handler(self):
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, status: int, value: dict) -> None:
                body = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == REALM:
                    self._json(200, {"realm": "petclick", "public_key": issuer.public_b64})
                elif self.path == f"{REALM}/.well-known/openid-configuration":
                    self._json(200, {"issuer": issuer.realm,
                                     "token_endpoint": f"{issuer.realm}/protocol/openid-connect/token"})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self):
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                name, password = form.get("username", [""])[0], form.get("password", [""])[0]
                if self.path != f"{REALM}/protocol/openid-connect/token" or issuer.users.get(name, ("",))[0] != password \
                        or not password:
                    self._json(401, {"error": "invalid_grant"})
                    return
                self._json(200, {"access_token": issuer.token(name), "token_type": "bearer", "expires_in": 600})

            def log_message(self, *_args):
                pass

        return Handler

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
