"""The superadmin sets the Schwab app; its secret is stored encrypted and never shown again."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import BrokerApp, User
from tests.support import login, make_user, post_form
from utils.enums import Role
from utils.extensions import db
from utils.services import broker_apps

PAGE, SAVE = "/admin/brokers/", "/admin/brokers/schwab"
CALLBACK = "https://trade.example.com/connections/schwab/callback"
SECRET = "schwab-app-secret-do-not-show"


@pytest.fixture()
def superadmin(app: Flask, client: FlaskClient) -> User:
    for name in ("SCHWAB_CLIENT_ID", "SCHWAB_CLIENT_SECRET", "SCHWAB_REDIRECT_URI"):
        app.config[name] = ""
    user = make_user("root@example.com", Role.SUPERADMIN)
    login(client, "root@example.com")
    return user


def save(client: FlaskClient, **fields: str) -> str:
    data = {"client_id": "app-key-0001", "client_secret": SECRET, "redirect_uri": CALLBACK} | fields
    post_form(client, PAGE, SAVE, data)
    return client.get(PAGE).get_data(as_text=True)


def test_the_saved_app_is_used_and_its_secret_is_encrypted_and_never_shown(
    superadmin: User, client: FlaskClient
) -> None:
    assert "No Schwab app yet" in client.get(PAGE).get_data(as_text=True)
    page = save(client)
    assert "Schwab app saved" in page and "stored encrypted" in page and SECRET not in page
    row = db.session.scalar(db.select(BrokerApp))
    assert row.client_secret_encrypted and SECRET not in row.client_secret_encrypted
    app_in_use = broker_apps.schwab_app()
    assert (app_in_use.client_id, app_in_use.client_secret, app_in_use.source) == ("app-key-0001", SECRET, "superadmin")
    assert SECRET not in repr(app_in_use)
    start = client.get("/connections/schwab/connect")
    assert start.status_code == 302 and "client_id=app-key-0001" in start.headers["Location"]


def test_a_blank_secret_keeps_the_stored_one(superadmin: User, client: FlaskClient) -> None:
    save(client)
    save(client, client_id="app-key-0002", client_secret="")
    assert (broker_apps.schwab_app().client_id, broker_apps.schwab_app().client_secret) == ("app-key-0002", SECRET)


@pytest.mark.parametrize(
    ("callback", "message"),
    [
        ("http://trade.example.com/connections/schwab/callback", "must be an https:// URL"),
        ("https://trade.example.com/callback", "must end in /connections/schwab/callback"),
        ("https://trade.example.com/connections/schwab/callback?x=1", "must end in"),
    ],
)
def test_a_bad_callback_url_is_refused_and_nothing_is_saved(
    superadmin: User, client: FlaskClient, callback: str, message: str
) -> None:
    assert message in save(client, redirect_uri=callback)
    assert db.session.scalar(db.select(db.func.count(BrokerApp.id))) == 0


def test_a_first_save_needs_a_secret(superadmin: User, client: FlaskClient) -> None:
    assert "The Schwab app secret is required" in save(client, client_secret="")


def test_the_environment_wins_and_the_page_says_so(app: Flask, superadmin: User, client: FlaskClient) -> None:
    save(client)
    app.config |= {"SCHWAB_CLIENT_ID": "env-key-9999", "SCHWAB_CLIENT_SECRET": "env", "SCHWAB_REDIRECT_URI": CALLBACK}
    assert "the app from the environment" in client.get(PAGE).get_data(as_text=True)
    assert broker_apps.schwab_app().client_id == "env-key-9999"


def test_traders_cannot_see_or_set_the_app(client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    assert client.get(PAGE).status_code == 403
    assert client.post(SAVE, data={"client_id": "x"}).status_code in (400, 403)
    assert db.session.scalar(db.select(db.func.count(BrokerApp.id))) == 0
