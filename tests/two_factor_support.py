"""Helpers for two-factor tests: codes an authenticator app would show, and one it would not."""

from __future__ import annotations

import time

import pyotp


def code_for(secret: str, steps_ahead: int = 1) -> str:
    """A valid code for a step after the one just used (a code is good once, per step)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def wrong_code(secret: str) -> str:
    """A 6-digit code that matches no step in the accepted window."""
    totp = pyotp.TOTP(secret)
    valid = {totp.at(time.time() + 30 * offset) for offset in range(-2, 3)}
    return next(code for code in (f"{n:06d}" for n in range(1000)) if code not in valid)
