"""Personal API tokens: created once in plain text, stored as a SHA-256 hash, revoked by their owner.

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
MAX_LIFETIME_DAYS = 3650
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
    """Issue a token with ``scopes`` (a subset of read, trade, admin); commit and audit."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(
            f"Give the token a name of 1 to {MAX_NAME_LENGTH} characters.", details={"field": "name"}
        )
    granted = _checked_scopes(user, scopes)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_LIFETIME_DAYS:
        raise InvalidInputError(
            f"A token expires after 1 to {MAX_LIFETIME_DAYS} days.", details={"field": "expires_in_days"}
        )
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=token_hash(plaintext),
        token_prefix=plaintext[:SHOWN_PREFIX_LENGTH],
        scopes=",".join(scope for scope in SCOPES if scope in granted),
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    db.session.add(token)
    db.session.flush()
    audit.record("api_token.create", actor=user, subject=token, details={"name": name, "scopes": token.scopes})
    db.session.commit()
    return IssuedToken(token, plaintext)


def authenticate(plaintext: str) -> TokenIdentity:
    """The identity behind a presented token; AuthenticationRequiredError when it cannot be used."""
    statement = db.select(ApiToken, User).join(User, User.id == ApiToken.user_id)
    found = db.session.execute(statement.where(ApiToken.token_hash == token_hash(plaintext.strip()))).first()
    if found is None:
        raise AuthenticationRequiredError(REFUSED_MESSAGE)
    token, user = found._tuple()
    now = utcnow()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now) or not user.active:
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
