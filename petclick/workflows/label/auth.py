"""MONAI Label's authentication, made to work under PyJWT 2: token checks of the label server.

MONAI Label 0.8.5 authenticates with Keycloak (MONAI_LABEL_AUTH_ENABLE, MONAI_LABEL_AUTH_REALM_URI,
the MONAI_LABEL_AUTH_* claim and role names): a client asks `POST /auth/token` (the server passes
the user's name and password to the realm's token endpoint), then sends `Authorization: Bearer
<token>`; each endpoint requires a role (`monailabel-user` for info, datastore and inference,
`monailabel-annotator` to submit labels, `monailabel-admin` for logs). Its token check
(`monailabel.endpoints.user.auth.from_token`) calls `jwt.decode` without `algorithms`, which PyJWT
2 (2.15.1 here) refuses for every token, so with authentication on no request could pass.
`install()` replaces that check with `verify_token`: the same claims and roles (realm public key
from the realm URI, username, email, name, roles at MONAI_LABEL_AUTH_TOKEN_ROLES), signatures
checked with the asymmetric algorithms Keycloak signs with (`ALGORITHMS`; never HMAC, so a
public key cannot be used as a shared secret), `exp` required. An unreachable realm is a 503.
"""

from __future__ import annotations

import logging

import jwt
import requests
from fastapi import HTTPException

import monailabel.endpoints.user.auth as ml_auth
from monailabel.config import settings

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def _claim(payload: dict, path: str):
    """A claim by its MONAI Label name: `a#b` is payload["a"]["b"]."""
    value = payload
    for part in path.split("#"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def verify_token(token: str) -> ml_auth.User:
    """The user of a bearer token (module docstring); jwt.InvalidTokenError for a bad token."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return ml_auth.DEFAULT_USER
    realm = settings.MONAI_LABEL_AUTH_REALM_URI
    try:
        key = ml_auth.get_public_key(realm)
    except (requests.RequestException, KeyError, ValueError) as exc:
        log.error("authentication: no public key from the realm %s: %s: %s", realm, type(exc).__name__, exc)
        raise HTTPException(status_code=503, detail=f"authentication server unreachable or not a Keycloak realm "
                                                    f"({realm}): {type(exc).__name__}") from exc
    payload = jwt.decode(token, key, algorithms=list(ALGORITHMS),
                         options={"verify_signature": True, "verify_aud": False, "verify_exp": True,
                                  "require": ["exp"]})
    roles = _claim(payload, settings.MONAI_LABEL_AUTH_TOKEN_ROLES)
    username = payload.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME)
    if not isinstance(username, str) or not username:
        raise jwt.InvalidTokenError(f"token has no {settings.MONAI_LABEL_AUTH_TOKEN_USERNAME!r} claim")
    return ml_auth.User(username=username, email=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
                        name=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
                        roles=[str(r) for r in roles] if isinstance(roles, list) else [])


def install() -> bool:
    """Put verify_token in place of MONAI Label's token check; True when authentication is on."""
    ml_auth.from_token = verify_token
    if settings.MONAI_LABEL_AUTH_ENABLE:
        log.info("authentication: on, realm %s (roles: user %s, annotator %s, admin %s)",
                 settings.MONAI_LABEL_AUTH_REALM_URI, settings.MONAI_LABEL_AUTH_ROLE_USER,
                 settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR, settings.MONAI_LABEL_AUTH_ROLE_ADMIN)
    return bool(settings.MONAI_LABEL_AUTH_ENABLE)
