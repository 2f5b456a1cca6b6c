"""SEC-07: passwords are stored as argon2id at OWASP's parameters (or stronger), older hashes are
upgraded at the next login, and the policy holds on creation, change and admin reset."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from flask import Flask
from flask.testing import FlaskClient

from models import User
from tests.support import DEFAULT_PASSWORD, login, make_user, post_form
from tests.two_factor_support import code_for
from utils.enums import Role
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.passwords import password_problems, verify_password
from utils.services import two_factor, users

OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_LANES = 19456, 2, 1
EMAIL = "trader@example.com"
# (password, what the policy says about it), for EMAIL and the default minimum length of 12.
BAD_PASSWORDS = [
    ("short pass", "Use at least 12 characters."),
    ("Password1234", "That password is too common."),
    ("abababababababab", "Use more than three different characters."),
    ("my trader password!", "Do not include your email name in the password."),
]
# Over 128 characters the change form itself refuses (400) before the policy is asked.
TOO_LONG = ("x" * 129, "Use at most 128 characters.")


def stored_hash(email: str = EMAIL) -> str:
    """The password hash in the database right now."""
    db.session.expire_all()
    return db.session.scalar(db.select(User.password_hash).where(User.email == email))


def assert_owasp_argon2id(password_hash: str) -> None:
    """argon2id with at least 19 MiB of memory, 2 iterations and 1 lane."""
    parameters = extract_parameters(password_hash)
    assert parameters.type is Type.ID
    assert parameters.memory_cost >= OWASP_MEMORY_KIB
    assert parameters.time_cost >= OWASP_ITERATIONS
    assert parameters.parallelism >= OWASP_LANES


# ---------------------------------------------------------------------------- storage


def test_every_way_of_setting_a_password_stores_owasp_argon2id(app: Flask, client: FlaskClient) -> None:
    root = make_user("root@example.com", Role.SUPERADMIN)
    trader = make_user()
    assert_owasp_argon2id(stored_hash())
    users.change_password(trader, DEFAULT_PASSWORD, "another long passphrase")
    assert_owasp_argon2id(stored_hash())
    users.reset_password(root, trader.id)
    assert_owasp_argon2id(stored_hash())
    assert DEFAULT_PASSWORD not in stored_hash() and "another long passphrase" not in stored_hash()


@pytest.mark.parametrize(
    "weaker",
    [
        PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID),
        PasswordHasher(time_cost=3, memory_cost=12288, parallelism=1, type=Type.I),
    ],
    ids=["argon2id-weaker", "argon2i"],
)
def test_a_weaker_hash_is_upgraded_at_the_next_login(client: FlaskClient, weaker: PasswordHasher) -> None:
    user = make_user()
    user.password_hash = weaker.hash(DEFAULT_PASSWORD)
    db.session.commit()
    old = stored_hash()
    assert login(client, EMAIL, "wrong password entirely").status_code == 401
    assert stored_hash() == old, "a failed login changes nothing"
    assert login(client, EMAIL).status_code == 302
    upgraded = stored_hash()
    assert upgraded != old
    assert_owasp_argon2id(upgraded)
    assert verify_password(upgraded, DEFAULT_PASSWORD)


def test_a_weaker_hash_is_upgraded_at_the_password_step_of_a_two_factor_login(client: FlaskClient) -> None:
    user = make_user()
    enrolment = two_factor.start_enrolment(user)
    two_factor.enable(user, enrolment.sealed, code_for(enrolment.secret, 0))
    user.password_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(DEFAULT_PASSWORD)
    db.session.commit()
    response = login(client, EMAIL)
    assert response.headers["Location"] == "/auth/two-factor"
    assert_owasp_argon2id(stored_hash())


# ---------------------------------------------------------------------------- policy


@pytest.mark.parametrize(("password", "problem"), [*BAD_PASSWORDS, TOO_LONG])
def test_the_policy_refuses_each_weak_password_at_creation(app: Flask, password: str, problem: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        users.create_user(EMAIL, password)
    assert problem in refused.value.details["problems"]
    assert users.find_by_email(EMAIL) is None, "nothing half-written"


@pytest.mark.parametrize(("password", "problem"), BAD_PASSWORDS)
def test_the_policy_refuses_each_weak_password_on_the_change_form(
    client: FlaskClient, trader: User, password: str, problem: str
) -> None:
    login(client, EMAIL)
    before = stored_hash()
    form = {"current_password": DEFAULT_PASSWORD, "new_password": password, "confirm": password}
    response = post_form(client, "/account/password", "/account/password", form)
    assert response.status_code == 422
    assert problem in response.get_data(as_text=True)
    assert stored_hash() == before


def test_the_admin_form_shows_the_policy_and_creates_nothing(client: FlaskClient) -> None:
    make_user("root@example.com", Role.SUPERADMIN)
    login(client, "root@example.com")
    form = {"email": "new@example.com", "role": "trader", "password": "short pass"}
    response = post_form(client, "/admin/users/new", "/admin/users/new", form)
    assert response.status_code == 422
    assert "Use at least 12 characters." in response.get_data(as_text=True)
    assert users.find_by_email("new@example.com") is None


@pytest.mark.parametrize("min_length", ["12", "32"])
def test_an_admin_reset_gives_a_password_that_meets_the_policy(
    environ: dict[str, str], request: pytest.FixtureRequest, min_length: str
) -> None:
    environ["PASSWORD_MIN_LENGTH"] = min_length
    app: Flask = request.getfixturevalue("app")
    long_password = "a passphrase long enough for any minimum here"
    root = make_user("root@example.com", Role.SUPERADMIN, long_password)
    trader = make_user(password=long_password)
    temporary = users.reset_password(root, trader.id)
    assert password_problems(temporary, EMAIL, int(min_length)) == []
    assert login(app.test_client(), EMAIL, long_password).status_code == 401
    assert login(app.test_client(), EMAIL, temporary).status_code == 302
