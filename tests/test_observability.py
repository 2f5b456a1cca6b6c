"""Logs are structured and never carry secrets."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from utils.observability import REDACTED, configure_logging, get_logger, redact_text

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
