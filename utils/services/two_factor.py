"""Two-factor sign-in: TOTP (RFC 6238) codes and one-time recovery codes, every step audited.

The secret is encrypted at rest like every credential. While a user enrols it travels only
sealed (encrypted) in their session, until a valid code proves their authenticator app holds
it. A code works once: the accepted time step is stored and a code for that step or an earlier
one is refused. Recovery codes are long random strings, so their SHA-256 hash is stored (as for
API tokens); each works once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

import pyotp
from flask import current_app

from models import RecoveryCode, User
from utils.encryption import CredentialDecryptError
from utils.exceptions import AuthenticationRequiredError, ConflictError, InvalidInputError
from utils.extensions import db
from utils.money import utcnow
from utils.passwords import verify_password
from utils.rowlock import claimed
from utils.services import audit, credential_checks, users
from utils.services.credentials import encryptor

ISSUER = "ArbionTrader"
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32: 5 bits a character
# One 30-second step either side of now: the phone's clock and ours may differ a little.
VALID_WINDOW = 1
# How long a correct password waits for its second step before the login starts over.
SIGN_IN_SECONDS = 300
INVALID_CODE = "That code is not valid. Enter the current 6-digit code from your app, or a recovery code."
IDENTITY_NOT_CONFIRMED = "The password or the code is not correct."
FIRST_FACTOR_NOT_CONFIRMED = "The password is not correct."


@dataclass(frozen=True)
class Enrolment:
    """A secret being enrolled: ``sealed`` (encrypted) rides in the session, ``uri`` feeds the QR code."""

    sealed: str = field(repr=False)
    secret: str = field(repr=False)
    uri: str = field(repr=False)


def is_enabled(user: User) -> bool:
    """True when the user signs in with a second factor."""
    return user.totp_secret_encrypted is not None


def enrolment_required(user: User) -> bool:
    """True when ADMIN_REQUIRE_TOTP holds this (admin) user back until they enrol."""
    return bool(current_app.config["ADMIN_REQUIRE_TOTP"]) and user.is_admin and not is_enabled(user)


def start_enrolment(user: User, sealed: str | None = None) -> Enrolment:
    """The enrolment in progress (from its sealed secret), or a new one with a fresh secret."""
    secret = _unsealed(sealed) if sealed else None
    secret = secret or pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return Enrolment(encryptor().encrypt(secret), secret, uri)


def enable(user: User, sealed: str, code: str) -> list[str]:
    """Turn two-factor on once ``code`` matches the enrolled secret; return the recovery codes
    (shown once). Other sessions end. Commit and audit."""
    if is_enabled(user):
        raise ConflictError("Two-factor sign-in is already on.")
    secret = _unsealed(sealed)
    step = _matching_step(secret, _cleaned(code), after=None) if secret else None
    if step is None:
        _refuse(user, "two_factor.enrol_failed", InvalidInputError(INVALID_CODE, details={"field": "code"}))
    user.totp_secret_encrypted = encryptor().encrypt(str(secret))
    user.totp_last_step = step
    user.session_version += 1
    codes = _new_recovery_codes(user)
    audit.record("two_factor.enable", actor=user, subject=user)
    db.session.commit()
    return codes


def disable(user: User, password: str, code: str) -> None:
    """Turn two-factor off after the password and a current code (or a recovery code). Commit, audit."""
    _confirm_identity(user, password, code, "two_factor.disable_failed")
    user.totp_secret_encrypted = None
    user.totp_last_step = None
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record("two_factor.disable", actor=user, subject=user)
    db.session.commit()


def replace_recovery_codes(user: User, password: str, code: str) -> list[str]:
    """A fresh set of recovery codes (the old ones stop working), after the password and a code."""
    _confirm_identity(user, password, code, "two_factor.recovery_codes_failed")
    codes = _new_recovery_codes(user)
    audit.record("two_factor.recovery_codes_replaced", actor=user, subject=user)
    db.session.commit()
    return codes


def confirm_identity(user: User, password: str, code: str, failed_action: str) -> None:
    """Re-check a signed-in user before a sensitive action: the password, and a current code (or a
    recovery code) when two-factor is on. One limited, audited check (``failed_action``) with one
    answer, whichever of the two is wrong; InvalidInputError."""

    def matches() -> bool:
        # The code is only tried (and a right one used up) once the password matched.
        if not verify_password(user.password_hash, password):
            return False
        return not is_enabled(user) or _accept_code(user, code) is not None

    if not credential_checks.check(failed_action, user.email, matches, actor=user):
        message = IDENTITY_NOT_CONFIRMED if is_enabled(user) else FIRST_FACTOR_NOT_CONFIRMED
        raise InvalidInputError(message, details={"field": "password"})


def _confirm_identity(user: User, password: str, code: str, failed_action: str) -> None:
    """``confirm_identity`` for a user with two-factor on (turning it off, new recovery codes)."""
    if not is_enabled(user):
        raise ConflictError("Two-factor sign-in is not on.")
    confirm_identity(user, password, code, failed_action)


def pending_sign_in(user: User) -> dict[str, int]:
    """What the session keeps between a correct password and the second step."""
    return {"user_id": user.id, "version": user.session_version, "started": int(time.time())}


def finish_sign_in(pending: Any, code: str) -> User:
    """The user whose password step ``pending`` records, once ``code`` is accepted (audited login).

    AuthenticationRequiredError when the step expired, the account changed since, or the code is wrong.
    """
    user = _pending_user(pending)
    accept = partial(_accept_code, user, code)
    method = credential_checks.check("auth.two_factor_failed", user.email, accept, actor=user)
    if method is None:
        raise AuthenticationRequiredError(INVALID_CODE)
    users.record_login(user, method=str(method))
    return user


def recovery_codes_left(user: User) -> int:
    """How many unused recovery codes the user has."""
    statement = db.select(db.func.count(RecoveryCode.id)).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
    )
    return int(db.session.scalar(statement) or 0)


def _pending_user(pending: Any) -> User:
    expired = AuthenticationRequiredError("Your sign-in expired. Log in again.")
    if not isinstance(pending, dict) or not all(
        isinstance(pending.get(k), int) for k in ("user_id", "version", "started")
    ):
        raise expired
    if time.time() - pending["started"] > SIGN_IN_SECONDS:
        raise expired
    user = db.session.get(User, pending["user_id"])
    if user is None or not user.active or user.session_version != pending["version"] or not is_enabled(user):
        raise expired
    return user


def _accept_code(user: User, code: str) -> str | None:
    """Which factor accepted ``code`` ("totp" or "recovery_code"), consuming it; None if none did."""
    cleaned = _cleaned(code)
    if cleaned.isdigit() and len(cleaned) == 6:
        secret = _stored_secret(user)
        step = _matching_step(secret, cleaned, after=user.totp_last_step)
        return "totp" if step is not None and _claim_step(user, step) else None
    return "recovery_code" if cleaned and _consume_recovery_code(user, cleaned) else None


def _cleaned(code: str) -> str:
    """The code without spaces and dashes, lower case (how people type recovery codes varies)."""
    return "".join(code.split()).replace("-", "").lower()


def _matching_step(secret: str, code: str, after: int | None) -> int | None:
    """The time step near now whose code is ``code`` (later than ``after``), or None."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(utcnow())
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if (after is None or step > after) and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _claim_step(user: User, step: int) -> bool:
    # One conditional UPDATE: two requests racing with the same code cannot both win.
    statement = (
        db.update(User)
        .where(User.id == user.id, db.or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
    )
    return claimed(statement)


def _consume_recovery_code(user: User, cleaned: str) -> bool:
    statement = (
        db.update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _hash(cleaned),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return claimed(statement)


def _new_recovery_codes(user: User) -> list[str]:
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash(code.replace("-", ""))) for code in codes)
    return codes


def _recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(16))  # 80 random bits
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _hash(cleaned: str) -> str:
    return hashlib.sha256(cleaned.encode()).hexdigest()


def _stored_secret(user: User) -> str:
    return encryptor().decrypt(str(user.totp_secret_encrypted))


def _unsealed(sealed: str) -> str | None:
    try:
        return encryptor().decrypt(sealed)
    except CredentialDecryptError:  # tampered or sealed under a retired key: start afresh
        return None


def _refuse(user: User, action: str, error: Exception) -> NoReturn:
    """Audit a refused code (committed, so the record survives the error), then raise."""
    db.session.rollback()
    audit.record(action, actor=user, subject=user)
    db.session.commit()
    raise error
