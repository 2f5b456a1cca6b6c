"""Helpers for two-factor tests: codes an authenticator app would show, one it would not, enrolment."""

from __future__ import annotations

import re
import time

import pyotp
from flask.testing import FlaskClient

from tests.support import csrf_token


def code_for(secret: str, steps_ahead: int = 1) -> str:
    """A valid code for a step after the one just used (a code is good once, per step)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def wrong_code(secret: str) -> str:
    """A 6-digit code that matches no step in the accepted window."""
    totp = pyotp.TOTP(secret)
    valid = {totp.at(time.time() + 30 * offset) for offset in range(-2, 3)}
    return next(code for code in (f"{n:06d}" for n in range(1000)) if code not in valid)


def enrol_through_the_page(client: FlaskClient) -> tuple[str, list[str]]:
    """Enrol the logged-in user with the page's secret; return it and the recovery codes shown."""
    page = client.get("/account/two-factor").get_data(as_text=True)
    secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page)
    assert secret, "the key is shown for typing it in"
    token = csrf_token(client, "/account/two-factor")
    shown = client.post("/account/two-factor/enable", data={"csrf_token": token, "code": pyotp.TOTP(secret[1]).now()})
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    codes = re.findall(r"<li><code>([a-z2-7-]{19})</code></li>", shown.get_data(as_text=True))
    assert len(codes) == 10
    return secret[1], codes
