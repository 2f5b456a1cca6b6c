"""Small request-safety helpers shared by the web adapters."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import url_for


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
