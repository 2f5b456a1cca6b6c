"""Logs are structured and never carry secrets."""

from __future__ import annotations

import json
import logging
import re

import pytest
from flask import Flask

from models import AuditLog
from tests.support import DEFAULT_PASSWORD, csrf_token, make_user
from utils.extensions import db
from utils.observability import REDACTED, configure_logging, get_logger, redact_text, safe_request_id

PEM = (
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oNI6hV0YQ9t\n-----END EC PRIVATE KEY-----"
)
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJvcmdhbml6YXRpb25zIn0.c2lnbmF0dXJlLXZhbHVl"
SECRETS = {
    "password": "correct horse battery staple",
    "refresh_token": "schwab-refresh-7f3a9c",
    "authorization": "Bearer abc.def.ghi",
    "api_key": "organizations/org/apiKeys/123",
}


@pytest.fixture()
def json_logs(capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    configure_logging("INFO", "json")
    yield capsys
    configure_logging("WARNING", "json")


def test_sensitive_fields_and_secret_looking_values_are_redacted(json_logs: pytest.CaptureFixture[str]) -> None:
    get_logger("test").info(
        "broker.call",
        **SECRETS,
        detail=f"sent Authorization: Bearer sk_live_12345678 with jwt {JWT}",
        url="postgresql://arbion:hunter2@db/prod",
        payload={"code_verifier": "pkce-verifier-value", "symbol": "AAPL", "nested": [PEM]},
    )
    line = json_logs.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    for secret in (*SECRETS.values(), "sk_live_12345678", JWT, "hunter2", "pkce-verifier-value", "MHcCAQEEIBkg"):
        assert secret not in line
    assert record["password"] == REDACTED
    assert record["payload"]["symbol"] == "AAPL"
    assert record["event"] == "broker.call"
    assert record["level"] == "info" and record["timestamp"].endswith("Z")


def test_standard_library_logs_pass_through_the_same_redaction(json_logs: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("urllib3").warning("retrying https://api.example/x?access_token=tok-9876543210 %s", JWT)
    line = json_logs.readouterr().err.strip().splitlines()[-1]
    assert "tok-9876543210" not in line and JWT not in line
    assert json.loads(line)["logger"] == "urllib3"


def test_request_logs_carry_the_request_id(app: Flask, json_logs: pytest.CaptureFixture[str]) -> None:
    with app.test_request_context("/", headers={"X-Request-ID": "trace-43"}):
        app.preprocess_request()
        get_logger("t").info("inside.request")
    record = json.loads(json_logs.readouterr().err.strip().splitlines()[-1])
    assert record["request_id"] == "trace-43"


def test_redact_text_keeps_ordinary_text() -> None:
    assert redact_text("bought 10 AAPL at 190.90") == "bought 10 AAPL at 190.90"
    assert redact_text("Authorization: Bearer abcdefghijkl") == f"Authorization: Bearer {REDACTED}"


@pytest.mark.parametrize(
    "incoming",
    [
        "trace-43",
        "a",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "client.req_42-B",
    ],
)
def test_a_well_formed_request_id_is_kept(incoming: str) -> None:
    assert safe_request_id(incoming) == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        None,
        "",
        "x" * 65,  # longer than the audit log's column
        "trace-43\n",  # a trailing newline, which ``$`` would let through
        "trace\r\nX-Injected: 1",
        "id with spaces",
        "<script>alert(1)</script>",
        "id\x00nul",
        "id\x1b[31mred",
        "id;drop",
        "\u0131d-dotless",  # a non-ASCII letter (dotless i)
        "١٢٣",  # non-ASCII digits
    ],
)
def test_a_request_id_in_any_other_form_is_replaced_by_a_new_one(incoming: str | None) -> None:
    generated = safe_request_id(incoming)
    assert generated != incoming
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert safe_request_id(incoming) != generated, "each request gets its own"


def test_the_audit_log_stores_only_a_safe_request_id(app: Flask) -> None:
    make_user()
    client = app.test_client()
    kept, forged = "client-trace.42", ["trace-43\n", "forged\tid<b>" + "x" * 80]
    for request_id in [kept, *forged]:
        token = csrf_token(client, "/auth/login")
        form = {"email": "trader@example.com", "password": DEFAULT_PASSWORD, "csrf_token": token}
        # As the WSGI server hands the header over, so a value no client library would send arrives too.
        client.post("/auth/login", data=form, environ_overrides={"HTTP_X_REQUEST_ID": request_id})
        client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/")})
    stored = db.session.scalars(db.select(AuditLog.request_id).where(AuditLog.action == "auth.login")).all()
    assert len(stored) == 3
    assert kept in stored
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", request_id) for request_id in stored), stored
