"""The account profile: name and email (a new email needs the current password), and its links."""

from __future__ import annotations

from flask.testing import FlaskClient

from models import User
from tests.support import DEFAULT_PASSWORD, login, make_user, post_form
from utils.extensions import db
from utils.services import audit


def save_profile(client: FlaskClient, **fields: str) -> object:
    return post_form(client, "/account/profile", "/account/profile", fields)


def test_the_profile_shows_name_email_and_the_security_links(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    page = client.get("/account/profile").get_data(as_text=True)
    assert 'id="profile"' in page and 'value="trader@example.com"' in page
    assert 'href="/account/password" id="link-password"' in page
    assert 'href="/account/tokens/" id="link-tokens"' in page
    assert 'href="/account/two-factor" id="link-two-factor"' in page and "Two-factor sign-in</a>: off" in page
    assert 'href="/account/profile" id="nav-account"' in page


def test_the_name_changes_without_the_password(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    response = save_profile(client, display_name="  Ada Trader ", email="trader@example.com")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get_one(User, trader.id).display_name == "Ada Trader"
    entry = audit.recent(1)[0]
    assert (entry.action, entry.details) == ("user.profile_update", {"changed": ["display_name"]})


def test_a_new_email_needs_the_current_password(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    refused = save_profile(client, display_name="", email="new@example.com", current_password="wrong password")
    assert refused.status_code == 422 and "current password" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get_one(User, trader.id).email == "trader@example.com"
    accepted = save_profile(client, display_name="", email="New@Example.com", current_password=DEFAULT_PASSWORD)
    assert accepted.status_code == 302
    db.session.expire_all()
    assert db.session.get_one(User, trader.id).email == "new@example.com"
    assert login(client.application.test_client(), "new@example.com").status_code == 302, "logs in with the new email"


def test_a_taken_email_answers_like_a_free_one_and_changes_nothing(client: FlaskClient, trader: User) -> None:
    make_user("taken@example.com")
    login(client, "trader@example.com")
    taken = save_profile(client, email="taken@example.com", current_password=DEFAULT_PASSWORD)
    taken_page = client.get("/account/profile").get_data(as_text=True)
    free = save_profile(client, email="free@example.com", current_password=DEFAULT_PASSWORD)
    free_page = client.get("/account/profile").get_data(as_text=True)
    assert (taken.status_code, taken.headers["Location"]) == (free.status_code, free.headers["Location"])
    assert "Your profile was saved." in taken_page and "Your profile was saved." in free_page
    assert "already" not in taken_page and "taken@example.com" not in taken_page
    db.session.expire_all()
    assert db.session.get_one(User, trader.id).email == "free@example.com", "only the free address was taken"
    refused = [entry for entry in audit.recent() if entry.action == "user.email_change_refused"]
    assert [(entry.actor_id, entry.details) for entry in refused] == [(trader.id, {"reason": "email in use"})]


def test_an_invalid_email_is_refused_with_the_reason(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    invalid = save_profile(client, email="not-an-email", current_password=DEFAULT_PASSWORD)
    assert invalid.status_code == 422 and "Invalid email" in invalid.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get_one(User, trader.id).email == "trader@example.com"


def test_the_profile_needs_a_login(client: FlaskClient) -> None:
    response = client.get("/account/profile")
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login")
