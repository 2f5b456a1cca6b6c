"""One HTTP layer for every broker client: timeouts, bounded read retries, error mapping, logging.

Reads are retried a few times (timeouts, 5xx, 429 honouring Retry-After). Writes are NEVER
retried here: a write that certainly did not reach the broker (connection refused, connect
timeout, 429) raises a temporary error; one that may have reached it (read timeout, dropped
connection, 5xx) raises UnknownOrderOutcomeError so the caller reconciles instead of resending.
Log lines carry method, path (no query string), status, duration and the broker's correlation id,
never headers or bodies. A refusal's body loses every credential the request carried before any
caller reads it: a broker that repeats them in an error message cannot carry them into our error
responses, rejection reasons, notifications or logs.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from utils.exceptions import (
    APIConnectionError,
    AuthenticationError,
    BrokerTemporaryError,
    RateLimitExceededError,
    UnknownOrderOutcomeError,
)
from utils.observability import REDACTED, get_logger

log = get_logger(__name__)
DEFAULT_TIMEOUT = (3.05, 10.0)
MAX_RETRY_AFTER_SECONDS = 30.0
# Form and query fields that carry credentials (OAuth token requests).
CREDENTIAL_FIELDS = frozenset({"refresh_token", "access_token", "code", "code_verifier", "client_secret"})


@dataclass(frozen=True)
class HttpPolicy:
    """Timeouts and read-retry policy of one client."""

    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    read_attempts: int = 3
    backoff_seconds: float = 0.5
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS


class BrokerHttp:
    """A requests session bound to one broker's base URL."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        policy: HttpPolicy | None = None,
        correlation_header: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.policy = policy or HttpPolicy()
        self.correlation_header = correlation_header
        self._sleep = sleep
        self.session = requests.Session()

    def url(self, path: str) -> str:
        """The absolute URL of a path under the base URL."""
        return f"{self.base_url}{path}"

    def read(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request that changes nothing at the broker: retried on temporary failures."""
        attempts = self.policy.read_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._checked(self._send_read(method, path, attempt, **kwargs))
            except BrokerTemporaryError as exc:
                if attempt == attempts:
                    raise
                self._sleep(self._wait_before_retry(exc, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request that changes state at the broker: sent once, outcome classified."""
        try:
            response = self._send(method, path, 1, **kwargs)
        except (requests.ConnectTimeout, _RefusedConnection) as exc:
            raise APIConnectionError(details={"provider": self.provider}) from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise UnknownOrderOutcomeError(details={"provider": self.provider, "cause": type(exc).__name__}) from exc
        if response.status_code >= 500:
            raise UnknownOrderOutcomeError(details={"provider": self.provider, "status": response.status_code})
        return self._checked(response)

    def _send_read(self, method: str, path: str, attempt: int, **kwargs: Any) -> requests.Response:
        try:
            return self._send(method, path, attempt, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise APIConnectionError(details={"provider": self.provider, "cause": type(exc).__name__}) from exc

    def _send(self, method: str, path: str, attempt: int, **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        try:
            response = self.session.request(method, self.url(path), timeout=self.policy.timeout, **kwargs)
        except requests.ConnectionError as exc:
            self._log(method, path, attempt, started, error=type(exc).__name__)
            if _is_refused(exc):
                raise _RefusedConnection(str(exc)) from exc
            raise
        self._log(method, path, attempt, started, response=response)
        if response.status_code >= 400:
            scrub_refusal(response)
        return response

    def _checked(self, response: requests.Response) -> requests.Response:
        status = response.status_code
        if status == 401:
            raise AuthenticationError(details={"provider": self.provider})
        if status == 429:
            retry_after = _retry_after_seconds(response.headers)
            raise RateLimitExceededError(details={"provider": self.provider, "retry_after": retry_after})
        if status >= 500:
            raise BrokerTemporaryError(details={"provider": self.provider, "status": status})
        return response

    def _wait_before_retry(self, exc: BrokerTemporaryError, attempt: int) -> float:
        retry_after = exc.details.get("retry_after")
        if retry_after is not None:
            return min(float(retry_after), self.policy.max_retry_after)
        return float(self.policy.backoff_seconds * 2 ** (attempt - 1))

    def _log(self, method: str, path: str, attempt: int, started: float, response: Any = None, error: str = "") -> None:
        fields: dict[str, Any] = {
            "provider": self.provider,
            "method": method,
            "path": path.split("?", 1)[0],
            "attempt": attempt,
            "ms": round((time.monotonic() - started) * 1000, 1),
        }
        if response is not None:
            fields["status"] = response.status_code
            if self.correlation_header and self.correlation_header in response.headers:
                fields["correlation_id"] = response.headers[self.correlation_header]
        if error:
            fields["error"] = error
        log.info("broker.http", **fields)


def scrub_refusal(response: requests.Response) -> None:
    """Blank out of a refusal's body every credential its request sent (exact matches: the body stays
    valid JSON)."""
    text = response.content.decode(response.encoding or "utf-8", errors="replace")
    for credential in sent_credentials(response.request):
        text = text.replace(credential, REDACTED)
    # requests keeps the body in ``_content``; every later read (json, text) sees the scrubbed one.
    response._content = text.encode("utf-8")
    response.encoding = "utf-8"


def sent_credentials(request: requests.PreparedRequest | None) -> list[str]:
    """The credentials a request carried: its Authorization header (Basic decoded too) and the
    credential fields of its form body or query string, longest first."""
    if request is None:
        return []
    scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
    found = [value]
    if scheme.lower() == "basic":
        found += _basic_parts(value)
    body = request.body.decode(errors="replace") if isinstance(request.body, bytes) else request.body or ""
    fields = parse_qsl(urlsplit(request.url or "").query) + parse_qsl(body if "=" in body else "")
    found += [field_value for name, field_value in fields if name in CREDENTIAL_FIELDS]
    return sorted({credential for credential in found if len(credential) >= 6}, key=len, reverse=True)


def _basic_parts(value: str) -> list[str]:
    try:
        return base64.b64decode(value, validate=True).decode().split(":", 1)
    except (binascii.Error, UnicodeDecodeError):
        return []


class _RefusedConnection(requests.ConnectionError):
    """The TCP connection was never established: the broker cannot have seen the request."""


def _is_refused(exc: requests.ConnectionError) -> bool:
    # requests wraps urllib3's MaxRetryError, whose reason says why the connection failed.
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, NewConnectionError)


def _retry_after_seconds(headers: Mapping[str, str]) -> float:
    raw = headers.get("Retry-After", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 1.0
