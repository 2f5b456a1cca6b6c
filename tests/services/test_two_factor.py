"""Two-factor sign-in: enrolment proven by a code, secrets encrypted, codes good once, recovery codes."""

from __future__ import annotations

import time

import pyotp
import pytest
from flask import Flask

from models import RecoveryCode, User
from tests.support import DEFAULT_PASSWORD, make_user
from tests.two_factor_support import code_for, wrong_code
from utils.enums import Role
from utils.exceptions import AuthenticationRequiredError, InvalidInputError
from utils.extensions import db
from utils.services import audit, two_factor, users


def enrolled(user: User) -> tuple[str, list[str]]:
    """Turn two-factor on for ``user``; return the secret and the recovery codes."""
    enrolment = two_factor.start_enrolment(user)
    codes = two_factor.enable(user, enrolment.sealed, pyotp.TOTP(enrolment.secret).now())
    return enrolment.secret, codes


def sign_in(user: User, code: str) -> User:
    """The second step after a correct password."""
    return two_factor.finish_sign_in(two_factor.pending_sign_in(users.authenticate(user.email, DEFAULT_PASSWORD)), code)


def test_enrolment_needs_a_right_code_and_stores_the_secret_encrypted(app: Flask) -> None:
    user = make_user()
    enrolment = two_factor.start_enrolment(user)
    assert enrolment.secret not in enrolment.sealed and enrolment.uri.startswith("otpauth://totp/ArbionTrader:")
    with pytest.raises(InvalidInputError, match="not valid"):
        two_factor.enable(user, enrolment.sealed, wrong_code(enrolment.secret))
    assert not two_factor.is_enabled(db.session.get_one(User, user.id))
    codes = two_factor.enable(user, enrolment.sealed, pyotp.TOTP(enrolment.secret).now())
    stored = db.session.execute(db.text("SELECT totp_secret_encrypted FROM users WHERE id = :id"), {"id": user.id})
    ciphertext = stored.scalar_one()
    assert ciphertext and enrolment.secret not in ciphertext
    assert app.extensions["encryptor"].decrypt(ciphertext) == enrolment.secret
    assert len(codes) == 10 and len(set(codes)) == 10
    hashes = set(db.session.scalars(db.select(RecoveryCode.code_hash)))
    assert len(hashes) == 10 and not any(code.replace("-", "") in hashes or code in hashes for code in codes)
    actions = [entry.action for entry in audit.recent()]
    assert "two_factor.enrol_failed" in actions and "two_factor.enable" in actions


def test_a_tampered_enrolment_is_refused(app: Flask) -> None:
    user = make_user()
    enrolment = two_factor.start_enrolment(user)
    with pytest.raises(InvalidInputError):
        two_factor.enable(user, enrolment.sealed[:-4] + "AAAA", pyotp.TOTP(enrolment.secret).now())
    assert not two_factor.is_enabled(user)


def test_a_password_alone_does_not_complete_the_login(app: Flask) -> None:
    user = make_user()
    enrolled(user)
    before = db.session.get_one(User, user.id).last_login_at
    users.authenticate(user.email, DEFAULT_PASSWORD)
    db.session.expire_all()
    assert db.session.get_one(User, user.id).last_login_at == before
    assert "auth.login" not in [entry.action for entry in audit.recent()]


def test_a_code_completes_the_login_once_and_cannot_be_replayed(app: Flask) -> None:
    user = make_user()
    secret, _ = enrolled(user)
    code = code_for(secret)
    assert sign_in(user, code).id == user.id
    with pytest.raises(AuthenticationRequiredError, match="not valid"):
        sign_in(user, code)
    with pytest.raises(AuthenticationRequiredError):  # a code older than the last accepted one
        sign_in(user, pyotp.TOTP(secret).now())
    assert [e.action for e in audit.recent(3)] == [
        "auth.two_factor_failed",
        "auth.password_ok",
        "auth.two_factor_failed",
    ]


def test_the_enrolment_code_itself_cannot_log_in(app: Flask) -> None:
    user = make_user()
    enrolment = two_factor.start_enrolment(user)
    first = pyotp.TOTP(enrolment.secret).now()
    two_factor.enable(user, enrolment.sealed, first)
    with pytest.raises(AuthenticationRequiredError):
        sign_in(user, first)


def test_a_recovery_code_works_once(app: Flask) -> None:
    user = make_user()
    _, codes = enrolled(user)
    assert sign_in(user, codes[0].upper().replace("-", " ")).id == user.id, "case and separators do not matter"
    with pytest.raises(AuthenticationRequiredError):
        sign_in(user, codes[0])
    assert two_factor.recovery_codes_left(user) == 9
    logins = [entry.details for entry in audit.recent() if entry.action == "auth.login"]
    assert logins == [{"method": "recovery_code"}]


def test_a_recovery_code_of_another_user_does_not_work(app: Flask) -> None:
    alice, bob = make_user("alice@example.com"), make_user("bob@example.com")
    enrolled(alice)
    _, bobs = enrolled(bob)
    with pytest.raises(AuthenticationRequiredError):
        sign_in(alice, bobs[0])


def test_an_old_or_revoked_pending_sign_in_is_refused(app: Flask) -> None:
    user = make_user()
    secret, _ = enrolled(user)
    stale = {**two_factor.pending_sign_in(user), "started": int(time.time()) - two_factor.SIGN_IN_SECONDS - 1}
    with pytest.raises(AuthenticationRequiredError, match="expired"):
        two_factor.finish_sign_in(stale, code_for(secret))
    pending = two_factor.pending_sign_in(user)
    users.logout(user)  # the session version moves on: the half-done login dies with it
    with pytest.raises(AuthenticationRequiredError, match="expired"):
        two_factor.finish_sign_in(pending, code_for(secret))
    with pytest.raises(AuthenticationRequiredError):
        two_factor.finish_sign_in({"user_id": "1"}, code_for(secret))


def test_disabling_needs_the_password_and_a_code(app: Flask) -> None:
    user = make_user()
    secret, _ = enrolled(user)
    with pytest.raises(InvalidInputError, match=r"^The password or the code is not correct\.$"):
        two_factor.disable(user, "wrong password", code_for(secret))
    with pytest.raises(InvalidInputError, match=r"^The password or the code is not correct\.$"):
        two_factor.disable(user, DEFAULT_PASSWORD, wrong_code(secret))
    assert [entry.action for entry in audit.recent(2)] == ["two_factor.disable_failed"] * 2, "both failures audited"
    assert two_factor.is_enabled(user)
    two_factor.disable(user, DEFAULT_PASSWORD, code_for(secret))
    db.session.expire_all()
    fresh = db.session.get_one(User, user.id)
    assert not two_factor.is_enabled(fresh) and fresh.totp_last_step is None
    assert db.session.scalar(db.select(db.func.count(RecoveryCode.id))) == 0
    assert users.authenticate(user.email, DEFAULT_PASSWORD).last_login_at is not None, "password alone again"


def test_admins_must_enrol_only_when_the_setting_is_on(app: Flask) -> None:
    admin = make_user("admin@example.com", Role.ADMIN)
    trader = make_user()
    assert not two_factor.enrolment_required(admin)
    app.config["ADMIN_REQUIRE_TOTP"] = True
    assert two_factor.enrolment_required(admin) and not two_factor.enrolment_required(trader)
    enrolled(admin)
    assert not two_factor.enrolment_required(admin)
