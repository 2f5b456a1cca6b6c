"""Small request-safety helpers shared by the web adapters."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Response, make_response, url_for
from flask.typing import ResponseReturnValue


def safe_next(target: str | None, fallback_endpoint: str = "dashboard.index") -> str:
    """A same-site relative path to go to after login, or the fallback (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for(fallback_endpoint)
    if "\\" in target or any(ord(char) < 0x20 for char in target):
        return url_for(fallback_endpoint)
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for(fallback_endpoint)
    return target


def no_store(view: Callable[..., ResponseReturnValue]) -> Callable[..., Response]:
    """Mark a view that shows a secret (a password, token, key or recovery code): every response
    it gives, errors included, carries ``Cache-Control: no-store`` so no cache or history keeps it."""

    @functools.wraps(view)
    def answer(*args: Any, **kwargs: Any) -> Response:
        response = make_response(view(*args, **kwargs))
        response.headers["Cache-Control"] = "no-store"
        return response

    answer.shows_secret = True  # type: ignore[attr-defined]  # lets a test list every such view
    return answer
