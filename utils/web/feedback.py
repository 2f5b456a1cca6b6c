"""Run a service action for a page and tell the user how it went (a flash message)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import flash

from utils.exceptions import ArbionError

Result = TypeVar("Result")


def attempt(action: Callable[[], Result], success: str = "") -> Result | None:
    """Call ``action``; flash its error in words (and return None) or flash ``success``."""
    try:
        result = action()
    except ArbionError as exc:
        flash(exc.message, "error")
        return None
    if success:
        flash(success, "info")
    return result
