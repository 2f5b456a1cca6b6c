"""Who is calling the API, what they may do, and how often.

A call carries ``Authorization: Bearer <token>`` or rides on the browser session. Token calls are
exempt from CSRF (no cookie is involved, so a forged cross-site request cannot carry one); a
session call that changes something must send the page's CSRF token in the X-CSRFToken header.
Scopes: ``read`` for GETs, ``trade`` for writes, ``admin`` for every admin resource.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, request
from flask_limiter.util import get_remote_address
from flask_login import current_user

from models import User
from utils.exceptions import AuthenticationRequiredError, PermissionDeniedError
from utils.extensions import csrf, limiter
from utils.services import api_tokens

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BEARER_HINT = "Send an API token as 'Authorization: Bearer <token>', or log in."


@dataclass(frozen=True)
class Caller:
    """The user behind an API call and the scopes it carries."""

    user: User
    scopes: frozenset[str]


def authenticate(admin: bool) -> None:
    """Identify the caller (401 when nobody) and check the scope this call needs (403)."""
    caller = _token_caller() if "Authorization" in request.headers else _session_caller()
    needed = "admin" if admin else ("read" if request.method in SAFE_METHODS else "trade")
    if needed not in caller.scopes:
        raise PermissionDeniedError(f"This call needs the {needed} scope.", details={"required_scope": needed})
    g.api_caller = caller


def caller() -> User:
    """The authenticated user of this API call."""
    identity: Caller = g.api_caller
    return identity.user


def order_write_limit(view: Callable[..., Any]) -> Callable[..., Any]:
    """The stricter API_ORDER_RATE_LIMIT for calls that place, change or close orders (on top of
    API_RATE_LIMIT), counted per caller across all of them."""
    shared = limiter.shared_limit(
        _order_limit, scope="api-order-writes", key_func=rate_limit_key, override_defaults=False
    )
    return shared(view)


def rate_limit_key() -> str:
    """Count per token (the hash of the token parsed as authentication reads it, so spelling the
    header differently shares one budget), else per session user, else per client address."""
    token = bearer_token()
    if token is not None:
        return "api-token:" + api_tokens.token_hash(token)[:32]
    if current_user.is_authenticated:
        return f"api-user:{current_user.id}"
    return "api-ip:" + get_remote_address()


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme in any case, any spacing), or None."""
    scheme, *rest = request.headers.get("Authorization", "").split(None, 1) or [""]
    token = rest[0].strip() if rest else ""
    return token if scheme.lower() == "bearer" and token else None


def _token_caller() -> Caller:
    token = bearer_token()
    if token is None:
        raise AuthenticationRequiredError(BEARER_HINT)
    identity = api_tokens.authenticate(token)
    return Caller(identity.user, identity.scopes)


def _session_caller() -> Caller:
    if not current_user.is_authenticated:
        raise AuthenticationRequiredError(BEARER_HINT)
    if request.method not in SAFE_METHODS:
        csrf.protect()  # the blueprint is exempt from the global check, which token calls must skip
    user: User = current_user._get_current_object()
    return Caller(user, api_tokens.session_scopes(user))


def api_limit() -> str:
    """API_RATE_LIMIT, read per request so tests and operators can change it."""
    return str(current_app.config["API_RATE_LIMIT"])


def _order_limit() -> str:
    return str(current_app.config["API_ORDER_RATE_LIMIT"])
