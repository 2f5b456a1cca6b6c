"""Structured logging with request ids, and redaction of secrets before anything is written.

Every log line, ours or a library's, passes through ``redact_secrets``: sensitive keys are
masked whole, and secret-looking values (bearer tokens, JWTs, PEM keys, Fernet tokens,
passwords inside URLs) are masked wherever they appear in a string.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from flask import Flask, Response, g, has_request_context, request

REDACTED = "[REDACTED]"
_SENSITIVE_KEY = re.compile(
    r"pass(word)?|secret|token|authorization|cookie|api[_-]?key|private[_-]?key|"
    r"encryption[_-]?key|credential|session|signature|otp|code_verifier",
    re.IGNORECASE,
)
_SECRET_PATTERNS = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}"),
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
    re.compile(r"(?i)((?:password|secret|token|refresh_token|access_token|code)=)[^&\s]+"),
)
# A caller's X-Request-ID is kept only in this form: it is logged and stored in the audit log.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def redact_text(text: str) -> str:
    """Mask secret-looking substrings of a string."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(_mask_match, text)
    return text


def _mask_match(match: re.Match[str]) -> str:
    if match.re.groups and match.group(1) and match.group(0).startswith(match.group(1)):
        prefix = match.group(1)
        return prefix + REDACTED if prefix.endswith("=") else f"{prefix} {REDACTED}"
    return REDACTED


def redact_value(key: str, value: Any) -> Any:
    """Mask a value by its key, or scan it for secrets (recursing into dicts and lists)."""
    if key and _SENSITIVE_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value("", item) for item in value]
    return value


def redact_secrets(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redact every field except the level and timestamp."""
    for key, value in list(event_dict.items()):
        if key in ("level", "timestamp", "logger"):
            continue
        event_dict[key] = redact_value("" if key == "event" else key, value)
    return event_dict


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (servers and tests swap it)."""

    @property
    def stream(self) -> Any:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the stream is always the current standard error."""


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Route structlog and the standard library through one redacting pipeline."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = _CurrentStderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(name: str) -> Any:
    """A structlog logger bound to a module name."""
    return structlog.get_logger(name)


def current_request_id() -> str | None:
    """The id of the request being served, if any."""
    return g.get("request_id") if has_request_context() else None


def safe_request_id(incoming: str | None) -> str:
    """The caller's request id when it is 1-64 letters, digits, ``.``, ``_`` or ``-``; else a new one."""
    return incoming if incoming and _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def init_request_ids(app: Flask) -> None:
    """Give every request an id (the caller's X-Request-ID when well-formed) and echo it back."""

    @app.before_request
    def _assign_request_id() -> None:
        g.request_id = safe_request_id(request.headers.get("X-Request-ID"))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    @app.teardown_request
    def _forget_request_id(exc: BaseException | None) -> None:
        structlog.contextvars.clear_contextvars()
