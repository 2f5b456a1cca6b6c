"""The notifications page: the user's own notifications, a badge, read marks, and the webhook form."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import Notification, User
from tests.support import login, make_user, post_form
from utils.extensions import db
from utils.services import notifications


def signed_in(client: FlaskClient) -> User:
    user = make_user()
    login(client, "trader@example.com")
    return user


def test_the_page_lists_only_the_users_notifications_with_a_badge(client: FlaskClient) -> None:
    user = signed_in(client)
    other = make_user("other@example.com")
    notifications.notify(user.id, "stop_triggered", "AAPL: stop-loss crossed. Closing.", level="warning")
    notifications.notify(other.id, "drift", "someone else's drift")
    db.session.commit()
    home = client.get("/").get_data(as_text=True)
    assert '<span class="badge">1</span>' in home
    page = client.get("/notifications/").get_data(as_text=True)
    assert "AAPL: stop-loss crossed. Closing." in page and "someone else" not in page
    post_form(client, "/notifications/", "/notifications/read")
    assert 'class="badge"' not in client.get("/").get_data(as_text=True)
    assert db.session.scalar(db.select(Notification.read_at).where(Notification.user_id == user.id)) is not None
    assert db.session.scalar(db.select(Notification.read_at).where(Notification.user_id == other.id)) is None


def test_the_webhook_secret_is_shown_once_and_a_bad_url_is_explained(app: Flask, client: FlaskClient) -> None:
    user = signed_in(client)
    refused = post_form(client, "/notifications/", "/notifications/webhook", {"url": "http://10.0.0.5/hook"})
    assert refused.status_code == 302
    assert "must use https" in client.get("/notifications/").get_data(as_text=True)
    app.config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] = True
    shown = post_form(client, "/notifications/", "/notifications/webhook", {"url": "http://127.0.0.1:9/hook"})
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "Signing secret (shown once" in page
    assert shown.headers["Cache-Control"] == "no-store"
    db.session.refresh(user)
    assert user.webhook_url == "http://127.0.0.1:9/hook" and user.webhook_secret_encrypted
    assert "Signing secret" not in client.get("/notifications/").get_data(as_text=True), "never shown again"
    post_form(client, "/notifications/", "/notifications/webhook/clear")
    db.session.refresh(user)
    assert user.webhook_url is None


def test_anonymous_visitors_are_sent_to_log_in(client: FlaskClient) -> None:
    assert client.get("/notifications/").status_code in (302, 401)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://example.com:99999/hook", "The URL is not valid"),
        ("https://[::1/hook", "The URL is not valid"),
        ("https://[::1]]/hook", "The URL is not valid"),
        (f"https://{'a' * 64}.example.com/hook", "The host must be a DNS name"),
        ("https://127.0.0.1\\@example.com/hook", "without spaces or backslashes"),
        ("https://user:secret@example.com/hook", "must not contain a user name"),
        ("https://2130706433/hook", "The host must be a DNS name"),
        ("https://example.com:8443/hook", "port must be one of: 443"),
    ],
)
def test_a_malformed_or_unsafe_webhook_url_is_explained_not_a_server_error(
    client: FlaskClient, url: str, message: str
) -> None:
    user = signed_in(client)
    refused = post_form(client, "/notifications/", "/notifications/webhook", {"url": url})
    assert refused.status_code == 302
    assert message in client.get("/notifications/").get_data(as_text=True)
    db.session.refresh(user)
    assert user.webhook_url is None
