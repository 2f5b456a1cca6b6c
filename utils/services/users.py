"""Accounts: creation, login, logout, roles, activation and passwords, each audited."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy.engine import CursorResult

from models import (
    ApiToken,
    AuditLog,
    BrokerApp,
    BrokerConnection,
    DriftAlert,
    Fill,
    Notification,
    Order,
    PaperAccount,
    PaperOrder,
    PaperPosition,
    RecoveryCode,
    RiskSettings,
    SystemSetting,
    Trade,
    User,
)
from utils.enums import LIVE_ORDER_STATUSES, Role, TradeStatus
from utils.exceptions import AuthenticationRequiredError, ConflictError, InvalidInputError, NotFoundError
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.passwords import burn_verification_time, hash_password, needs_rehash, password_problems, verify_password
from utils.services import audit, credential_checks, notifications

log = get_logger(__name__)
LOGIN_FAILED_MESSAGE = "Invalid email or password."
OPEN_TRADE_STATUSES = (TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED, TradeStatus.CLOSING)


def normalise_email(email: str) -> str:
    """Lower-cased, validated email (emails are case-insensitive here)."""
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInputError(f"Invalid email address: {exc}", details={"field": "email"}) from exc
    return result.normalized.lower()


def is_email(text: str) -> bool:
    """True when ``text`` is shaped like an email address (not, say, a password typed in that field)."""
    try:
        normalise_email(text)
    except InvalidInputError:
        return False
    return True


def check_password_policy(password: str, email: str) -> None:
    """Raise InvalidInputError listing every way the password breaks the policy."""
    problems = password_problems(password, email, current_app.config["PASSWORD_MIN_LENGTH"])
    if problems:
        raise InvalidInputError(
            "The password does not meet the policy: " + " ".join(problems),
            details={"field": "password", "problems": problems},
        )


def generate_password(email: str) -> str:
    """A random password that meets the policy, however long PASSWORD_MIN_LENGTH is (20 at least)."""
    min_length = current_app.config["PASSWORD_MIN_LENGTH"]
    length = max(20, min_length)
    while True:
        candidate = secrets.token_urlsafe(length)[:length]
        if not password_problems(candidate, email, min_length):
            return candidate


def find_by_email(email: str) -> User | None:
    """The user with this email (any case), or None."""
    return db.session.scalar(db.select(User).where(User.email == email.strip().lower()))


def get_user(user_id: int) -> User:
    """The user with this id, or NotFoundError."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFoundError("No such user.")
    return user


def create_user(
    email: str, password: str, role: Role = Role.TRADER, *, actor: User | None = None, display_name: str = ""
) -> User:
    """Create an account after checking the email and the password policy; commit and audit."""
    email = normalise_email(email)
    check_password_policy(password, email)
    if find_by_email(email) is not None:
        raise ConflictError("A user with that email already exists.", details={"field": "email"})
    now = utcnow()
    user = User(
        email=email,
        display_name=display_name.strip()[:120],
        password_hash=hash_password(password),
        role=role,
        password_changed_at=now,
    )
    db.session.add(user)
    db.session.flush()
    audit.record("user.create", actor=actor, subject=user, details={"email": email, "role": role.value})
    db.session.commit()
    return user


def authenticate(email: str, password: str) -> User:
    """The active user with these credentials; AuthenticationRequiredError otherwise (audited).

    Limited per account and address by services.credential_checks; unknown, deactivated and
    active accounts answer alike, in the same time.
    """
    user = find_by_email(email)
    # Only a real email is kept: people do type their password into the email field.
    typed = email.strip().lower()[:254] if is_email(email) else "(not an email address)"
    verify = partial(_signed_in_user, user, password)
    user = credential_checks.check("auth.login_failed", email, verify, actor=user, details={"email": typed})
    if user is None:
        raise AuthenticationRequiredError(LOGIN_FAILED_MESSAGE)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    if user.totp_secret_encrypted is not None:
        # Half way: services.two_factor.finish_sign_in completes (and records) the login.
        audit.record("auth.password_ok", actor=user, subject=user)
        db.session.commit()
        return user
    record_login(user)
    return user


def _signed_in_user(user: User | None, password: str) -> User | None:
    """The user when active and the password matches. One argon2 verification whoever is asked
    about: an unknown or deactivated account is checked against a dummy hash, so it answers as slowly."""
    if user is None or not user.active:
        burn_verification_time()
        return None
    return user if verify_password(user.password_hash, password) else None


def record_login(user: User, method: str = "password") -> None:
    """Note a completed login (time and audit entry) and commit."""
    user.last_login_at = utcnow()
    audit.record("auth.login", actor=user, subject=user, details={"method": method})
    db.session.commit()


def user_for_session(session_id: str) -> User | None:
    """The user for a Flask-Login session id "<id>:<version>", unless it was revoked."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


def logout(user: User) -> None:
    """End every session of this user server-side (the session version moves on)."""
    user.session_version += 1
    audit.record("auth.logout", actor=user, subject=user)
    db.session.commit()


def change_password(user: User, current_password: str, new_password: str) -> None:
    """Change one's own password after re-checking the current one; other sessions end."""
    if not password_confirmed(user, current_password, "user.password_change_failed"):
        raise InvalidInputError("The current password is not correct.", details={"field": "current_password"})
    check_password_policy(new_password, user.email)
    revoked = _set_password(user, new_password)
    audit.record("user.password_change", actor=user, subject=user, details={"tokens_revoked": revoked})
    _notify_access_ended(user, "Your password was changed", revoked)
    db.session.commit()


def password_confirmed(user: User, password: str, failure_action: str) -> bool:
    """True when ``password`` is the user's own: a limited check whose failure is audited as
    ``failure_action`` (TooManyAttemptsError once the failures are used up)."""
    verify = partial(verify_password, user.password_hash, password)
    return credential_checks.check(failure_action, user.email, verify, actor=user)


def update_profile(user: User, display_name: str, email: str, current_password: str) -> User:
    """Change one's own name and email; a new email needs the current password. Commit and audit.

    An email another account uses is not taken (audited), and the answer is the same as when it is
    free, so the form cannot tell who has an account. There is no mail yet to confirm an address.
    """
    email = normalise_email(email)
    changes: dict[str, str] = {}
    if email != user.email:
        if not password_confirmed(user, current_password, "user.email_change_failed"):
            raise InvalidInputError(
                "Enter your current password to change your email.", details={"field": "current_password"}
            )
        if find_by_email(email) is None:
            changes["email"] = email
        else:
            audit.record("user.email_change_refused", actor=user, subject=user, details={"reason": "email in use"})
    if display_name.strip()[:120] != user.display_name:
        changes["display_name"] = display_name.strip()[:120]
    for name, value in changes.items():
        setattr(user, name, value)
    if changes:
        audit.record("user.profile_update", actor=user, subject=user, details={"changed": sorted(changes)})
    db.session.commit()
    return user


def _set_password(user: User, password: str) -> int:
    """Store the new password and end every way in made with the old one: sessions and API tokens
    (how many tokens were revoked is returned)."""
    user.password_hash = hash_password(password)
    user.password_changed_at = utcnow()
    user.session_version += 1
    revoke = db.update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    result = cast(CursorResult[Any], db.session.execute(revoke.values(revoked_at=utcnow())))
    return result.rowcount


def _notify_access_ended(user: User, what: str, tokens_revoked: int) -> None:
    """Tell the user their password changed and what stopped working (the caller commits)."""
    message = f"{what}. Sessions signed in before were ended and {tokens_revoked} API token(s) were revoked."
    notifications.notify(
        user.id,
        "account.password_changed",
        message + " If this was not you, contact an administrator.",
        level="warning",
        subject=user,
    )


# ---------------------------------------------------------------------------- admin actions


def change_role(actor: User, user_id: int, role: Role) -> User:
    """Give a user another role; nobody changes their own role; a last superadmin stays."""
    user = get_user(user_id)
    if user.id == actor.id:
        raise ConflictError("You cannot change your own role.")
    if user.role == Role.SUPERADMIN and role != Role.SUPERADMIN:
        _keep_one_superadmin(user)
    previous = user.role
    user.role = role
    user.session_version += 1
    audit.record("admin.user_role", actor=actor, subject=user, details={"from": previous.value, "to": role.value})
    db.session.commit()
    return user


def set_active(actor: User, user_id: int, active: bool) -> User:
    """Activate or deactivate a user; deactivation ends their sessions."""
    user = get_user(user_id)
    if user.id == actor.id and not active:
        raise ConflictError("You cannot deactivate yourself.")
    if not active and user.role == Role.SUPERADMIN:
        _keep_one_superadmin(user)
    user.active = active
    if not active:
        user.session_version += 1
    audit.record("admin.user_activate" if active else "admin.user_deactivate", actor=actor, subject=user)
    db.session.commit()
    return user


def reset_password(actor: User, user_id: int) -> str:
    """Give a user a new random password (returned once, never stored in clear); sessions end."""
    user = get_user(user_id)
    temporary = generate_password(user.email)
    revoked = _set_password(user, temporary)
    audit.record("admin.user_password_reset", actor=actor, subject=user, details={"tokens_revoked": revoked})
    _notify_access_ended(user, "An administrator reset your password", revoked)
    db.session.commit()
    return temporary


def delete_user(actor: User, user_id: int) -> str:
    """Delete an account and everything it owns; returns its email. Refused for oneself, the last
    active superadmin, and anyone with open positions or working orders (close those first)."""
    user = get_user(user_id)
    if user.id == actor.id:
        raise ConflictError("You cannot delete yourself.")
    if user.role == Role.SUPERADMIN and user.active:
        _keep_one_superadmin(user)
    if (busy := _open_business(user)) is not None:
        raise ConflictError(f"{user.email} still has {busy}: flatten or cancel them first, then delete.")
    email = user.email
    audit.record("admin.user_delete", actor=actor, subject=user, details={"email": email, "role": user.role.value})
    db.session.flush()
    db.session.expunge(user)
    _purge_rows(user_id)
    db.session.commit()
    return email


def _open_business(user: User) -> str | None:
    """Why the user cannot be deleted yet ("2 open position(s)"), or None."""
    open_trades = db.session.scalar(
        db.select(db.func.count(Trade.id)).where(Trade.user_id == user.id, Trade.status.in_(OPEN_TRADE_STATUSES))
    )
    live_orders = db.session.scalar(
        db.select(db.func.count(Order.id)).where(Order.user_id == user.id, Order.status.in_(LIVE_ORDER_STATUSES))
    )
    reasons = [f"{open_trades} open position(s)"] if open_trades else []
    reasons += [f"{live_orders} working order(s)"] if live_orders else []
    return " and ".join(reasons) or None


def _purge_rows(user_id: int) -> None:
    """Delete the user's rows children first, so it works with or without enforced cascades (SQLite)."""
    connection_ids = db.select(BrokerConnection.id).where(BrokerConnection.user_id == user_id)
    account_ids = db.select(PaperAccount.id).where(PaperAccount.connection_id.in_(connection_ids))
    order_ids = db.select(Order.id).where(Order.user_id == user_id)
    for model, condition in (
        (Fill, Fill.order_id.in_(order_ids)),
        (Order, Order.user_id == user_id),
        (Trade, Trade.user_id == user_id),
        (DriftAlert, DriftAlert.user_id == user_id),
        (PaperOrder, PaperOrder.account_id.in_(account_ids)),
        (PaperPosition, PaperPosition.account_id.in_(account_ids)),
        (PaperAccount, PaperAccount.connection_id.in_(connection_ids)),
        (BrokerConnection, BrokerConnection.user_id == user_id),
        (Notification, Notification.user_id == user_id),
        (RiskSettings, RiskSettings.user_id == user_id),
        (ApiToken, ApiToken.user_id == user_id),
        (RecoveryCode, RecoveryCode.user_id == user_id),
    ):
        db.session.execute(db.delete(model).where(condition).execution_options(synchronize_session=False))
    for column in (AuditLog.actor_id, BrokerApp.updated_by_id, SystemSetting.updated_by_id):
        statement = db.update(column.class_).where(column == user_id).values({column.key: None})
        db.session.execute(statement.execution_options(synchronize_session=False))
    db.session.execute(db.delete(User).where(User.id == user_id).execution_options(synchronize_session=False))


def search_users(query: str = "", limit: int = 200) -> list[User]:
    """Users whose email or name contains the query, newest first."""
    statement = db.select(User).order_by(User.id.desc()).limit(limit)
    if needle := query.strip().lower():
        # autoescape: a "%" or "_" in the query is matched literally, never as a LIKE wildcard.
        matches = (
            User.email.contains(needle, autoescape=True),
            db.func.lower(User.display_name).contains(needle, autoescape=True),
        )
        statement = statement.where(db.or_(*matches))
    return list(db.session.scalars(statement))


def _keep_one_superadmin(leaving: User) -> None:
    # Lock every active superadmin row (the leaving one too), so two superadmins demoting each
    # other at the same moment are serialised and the second one sees the first one's change.
    superadmins = db.session.scalars(
        db.select(User.id).where(User.role == Role.SUPERADMIN, User.active.is_(True)).with_for_update()
    ).all()
    if not set(superadmins) - {leaving.id}:
        raise ConflictError("The last active superadmin cannot be demoted or deactivated.")


# ---------------------------------------------------------------------------- bootstrap and seed


@dataclass(frozen=True)
class SeededAccount:
    """An account made by seeding; ``password`` is set only when we generated it just now."""

    email: str
    role: Role
    password: str | None
    created: bool


def bootstrap_superadmin(email: str, password: str) -> SeededAccount:
    """Create the configured superadmin once; an existing account is never touched."""
    existing = find_by_email(email)
    if existing is not None:
        if existing.role != Role.SUPERADMIN:
            log.warning("bootstrap.superadmin_email_taken", user_id=existing.id)
        return SeededAccount(existing.email, existing.role, None, created=False)
    user = create_user(email, password, Role.SUPERADMIN, display_name="Superadmin")
    log.info("bootstrap.superadmin_created", user_id=user.id)
    return SeededAccount(user.email, user.role, None, created=True)


def ensure_account(email: str, role: Role, display_name: str) -> SeededAccount:
    """Create an account with a generated password unless the email exists."""
    existing = find_by_email(email)
    if existing is not None:
        return SeededAccount(existing.email, existing.role, None, created=False)
    password = generate_password(email)
    user = create_user(email, password, role, display_name=display_name)
    return SeededAccount(user.email, user.role, password, created=True)
