"""Personal API tokens: created once in plain text, stored as a SHA-256 hash, expiring, revoked by
their owner (and all at once when their password changes or is reset, see services.users).

A signed-in user creates one only after re-entering the password (and a two-factor code), so a
stolen session cookie cannot be turned into a lasting credential. Every token expires: after
API_TOKEN_DEFAULT_DAYS unless its creator picks another lifetime, at most API_TOKEN_MAX_DAYS.

A token is ``arb_`` + 43 URL-safe random characters (256 bits), so a plain SHA-256 is enough: the
database lookup of the hash is the comparison, and nothing about the secret is compared in Python
byte by byte. The ``admin`` scope is granted only to users who may enter the admin area, and it is
checked again on every request (a demoted user's admin token stops working).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app

from models import ApiToken, User
from utils.exceptions import AuthenticationRequiredError, InvalidInputError, NotFoundError
from utils.extensions import db
from utils.money import utcnow
from utils.rowlock import claimed
from utils.services import audit, two_factor

SCOPES = ("read", "trade", "admin")
TOKEN_PREFIX = "arb_"  # nosec B105 # noqa: S105 - a marker that makes leaked tokens easy to scan for, not a secret
SHOWN_PREFIX_LENGTH = 12
MAX_NAME_LENGTH = 80
LAST_USED_RESOLUTION = timedelta(minutes=1)  # at most one write per token per minute
REFUSED_MESSAGE = "The API token is missing, unknown, revoked or expired."


@dataclass(frozen=True)
class IssuedToken:
    """A new token: the stored row and the plain text, which is shown once and never again."""

    token: ApiToken
    plaintext: str


@dataclass(frozen=True)
class TokenIdentity:
    """Who a presented token speaks for, and what it may do."""

    user: User
    token_id: int
    scopes: frozenset[str]


def create_token(user: User, name: str, scopes: Iterable[str], expires_in_days: int | None = None) -> IssuedToken:
    """Issue a token with ``scopes`` (a subset of read, trade, admin) that expires after
    ``expires_in_days`` (API_TOKEN_DEFAULT_DAYS when None); commit and audit. For trusted callers
    (the operator's CLI): a signed-in user goes through create_confirmed_token."""
    request = _checked_request(user, name, scopes, expires_in_days)
    return _issue(user, request)


def create_confirmed_token(
    user: User, name: str, scopes: Iterable[str], expires_in_days: int | None, password: str, code: str
) -> IssuedToken:
    """create_token for a signed-in user, once they re-enter their password (and a two-factor code
    when they have it on): a stolen session alone cannot mint a lasting token. Failures are audited."""
    request = _checked_request(user, name, scopes, expires_in_days)  # before a one-time code is spent
    two_factor.confirm_identity(user, password, code, "api_token.create_failed")
    return _issue(user, request)


def lifetime_choices() -> list[int]:
    """The lifetimes (days) offered when creating a token: common ones up to the configured maximum."""
    longest = current_app.config["API_TOKEN_MAX_DAYS"]
    offered = {30, 90, 180, 365, current_app.config["API_TOKEN_DEFAULT_DAYS"], longest}
    return sorted(days for days in offered if days <= longest)


def default_lifetime() -> int:
    """How many days a new token lives when its creator does not say (API_TOKEN_DEFAULT_DAYS)."""
    return int(current_app.config["API_TOKEN_DEFAULT_DAYS"])


def authenticate(plaintext: str) -> TokenIdentity:
    """The identity behind a presented token; AuthenticationRequiredError when it cannot be used."""
    statement = db.select(ApiToken, User).join(User, User.id == ApiToken.user_id)
    found = db.session.execute(statement.where(ApiToken.token_hash == token_hash(plaintext.strip()))).first()
    if found is None:
        raise AuthenticationRequiredError(REFUSED_MESSAGE)
    token, user = found._tuple()
    now = utcnow()
    if status_of(token) != "active" or not user.active:
        raise AuthenticationRequiredError(REFUSED_MESSAGE)
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        _touch(token.id, now)  # at most one write a minute per token, not one per request
    return TokenIdentity(user, token.id, _usable_scopes(user, token))


def list_tokens(user: User) -> list[ApiToken]:
    """The user's tokens, newest first (revoked ones included, marked by ``revoked_at``)."""
    statement = db.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
    return list(db.session.scalars(statement))


def revoke_token(user: User, token_id: int) -> ApiToken:
    """Revoke one of the user's own tokens (NotFoundError for anyone else's); commit and audit."""
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFoundError("No such API token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record("api_token.revoke", actor=user, subject=token, details={"name": token.name})
        db.session.commit()
    return token


def scopes_of(token: ApiToken) -> list[str]:
    """The scopes a token was granted, in their canonical order."""
    return [scope for scope in token.scopes.split(",") if scope]


def status_of(token: ApiToken) -> str:
    """ "revoked", "expired" or "active", as the token list shows it."""
    if token.revoked_at is not None:
        return "revoked"
    return "expired" if token.expires_at <= utcnow() else "active"


def session_scopes(user: User) -> frozenset[str]:
    """What a logged-in browser session may do through the API: what its user may do."""
    return frozenset(SCOPES) if may_hold_admin_scope(user) else frozenset(SCOPES) - {"admin"}


def may_hold_admin_scope(user: User) -> bool:
    """The admin scope mirrors the /admin area: superadmins only, enrolled in two-factor sign-in
    where ADMIN_REQUIRE_TOTP asks for it."""
    return user.is_superadmin and not two_factor.enrolment_required(user)


def token_hash(plaintext: str) -> str:
    """The stored form of a token (hex SHA-256)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


@dataclass(frozen=True)
class _TokenRequest:
    """A checked request for a token: its name, granted scopes and lifetime in days."""

    name: str
    scopes: frozenset[str]
    days: int


def _checked_request(user: User, name: str, scopes: Iterable[str], expires_in_days: int | None) -> _TokenRequest:
    """The name, scopes and lifetime checked (InvalidInputError naming the field otherwise)."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(
            f"Give the token a name of 1 to {MAX_NAME_LENGTH} characters.", details={"field": "name"}
        )
    granted = _checked_scopes(user, scopes)
    days = default_lifetime() if expires_in_days is None else expires_in_days
    longest = current_app.config["API_TOKEN_MAX_DAYS"]
    if not 1 <= days <= longest:
        raise InvalidInputError(f"A token expires after 1 to {longest} days.", details={"field": "expires_in_days"})
    return _TokenRequest(name, granted, days)


def _issue(user: User, request: _TokenRequest) -> IssuedToken:
    """Store a new token for a checked request; commit and audit. The plain text is returned once."""
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=request.name,
        token_hash=token_hash(plaintext),
        token_prefix=plaintext[:SHOWN_PREFIX_LENGTH],
        scopes=",".join(scope for scope in SCOPES if scope in request.scopes),
        expires_at=utcnow() + timedelta(days=request.days),
    )
    db.session.add(token)
    db.session.flush()
    details = {"name": request.name, "scopes": token.scopes, "expires_at": token.expires_at.isoformat()}
    audit.record("api_token.create", actor=user, subject=token, details=details)
    db.session.commit()
    return IssuedToken(token, plaintext)


def _checked_scopes(user: User, scopes: Iterable[str]) -> frozenset[str]:
    granted = frozenset(scope.strip().lower() for scope in scopes if scope.strip())
    if not granted or not granted <= set(SCOPES):
        raise InvalidInputError(f"Choose scopes among {', '.join(SCOPES)}.", details={"field": "scopes"})
    if "admin" in granted and not may_hold_admin_scope(user):
        raise InvalidInputError(
            "Only superadmins (with two-factor sign-in where required) may hold the admin scope.",
            details={"field": "scopes"},
        )
    return granted


def _usable_scopes(user: User, token: ApiToken) -> frozenset[str]:
    granted = frozenset(scopes_of(token))
    return granted if may_hold_admin_scope(user) else granted - {"admin"}


def _touch(token_id: int, now: datetime) -> None:
    """Record the use unless it was recorded less than a minute ago (one conditional UPDATE)."""
    stale = now - LAST_USED_RESOLUTION
    recent_enough = db.or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < stale)
    if claimed(db.update(ApiToken).where(ApiToken.id == token_id, recent_enough).values(last_used_at=now)):
        db.session.commit()
