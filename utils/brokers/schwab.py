"""Charles Schwab Trader API client: OAuth (authorization code + PKCE), accounts, quotes, orders.

Network only: tokens come from and go back to a caller-supplied ``TokenStore`` (the app keeps
them encrypted in the database), so this module never touches a database or Flask. Every call
goes through ``BrokerHttp``: reads are retried, writes are sent once and classified. Facts about
the API: docs/brokers.md ("Charles Schwab Trader API").
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import requests

from utils.brokers.base import (
    Balance,
    Broker,
    BrokerAccount,
    BrokerOrder,
    BrokerPosition,
    Candle,
    CandleInterval,
    Capabilities,
    Fill,
    MarketHours,
    OrderRequest,
    Quote,
    Transaction,
)
from utils.brokers.http import BrokerHttp, HttpPolicy
from utils.brokers.schwab_payloads import (
    PROVIDER,
    SCHWAB_STATUS_FILTER,
    accepted_order_id,
    broker_message,
    build_order,
    check_window,
    decode_json,
    eastern_date,
    error_body,
    flatten_orders,
    ok_json,
    parse_balance,
    parse_candle,
    parse_market_hours,
    parse_order,
    parse_position,
    parse_quote,
    parse_transaction,
    price_history_params,
    price_step,
    quote_problem,
    schwab_time,
    submitted_order,
)
from utils.enums import OrderStatus
from utils.exceptions import (
    AuthenticationError,
    BrokerTemporaryError,
    DataValidationError,
    OrderCancellationError,
    TokenExpiredError,
    UnknownOrderOutcomeError,
)
from utils.money import utcnow
from utils.observability import get_logger

log = get_logger(__name__)

DEFAULT_BASE_URL = "https://api.schwabapi.com"
TOKEN_PATH = "/v1/oauth/token"  # nosec B105 # noqa: S105 - a URL path, not a secret
ACCESS_LIFETIME_SECONDS = 1800
REFRESH_TOKEN_LIFETIME = timedelta(days=7)
REFRESH_MARGIN = timedelta(minutes=5)
MAX_ORDER_WINDOW = timedelta(days=60)
ORDER_WRITES_PER_MINUTE = 120
# Token-endpoint errors meaning "this refresh token is dead: the user must log in again".
_DEAD_REFRESH_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "refresh_token_authentication_error", "unsupported_token_type"}
)
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class OAuthTokens:
    """A Schwab token pair; times are aware UTC. Tokens are kept out of ``repr`` (logs, tracebacks)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_at: datetime
    refresh_issued_at: datetime


def refresh_token_days_left(tokens: OAuthTokens, now: datetime) -> float:
    """Days until the refresh token dies (about 7 days after login); negative once dead."""
    remaining = tokens.refresh_issued_at + REFRESH_TOKEN_LIFETIME - now
    return remaining.total_seconds() / 86400


def make_pkce_pair() -> tuple[str, str]:
    """A fresh PKCE (code_verifier, code_challenge) pair, challenge method S256 (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class TokenStore(Protocol):
    """Where a connection's tokens live; the caller supplies a cross-process refresh lock."""

    def load(self) -> OAuthTokens:
        """The current tokens."""

    def save(self, tokens: OAuthTokens) -> None:
        """Replace the tokens atomically."""

    def refresh_lock(self) -> AbstractContextManager[Any]:
        """A lock held by one refresher at a time, across processes."""


class SchwabOAuth:
    """The OAuth endpoints of one registered Schwab app (client id = app key, secret = app secret)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        http: BrokerHttp | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.http = http or BrokerHttp(PROVIDER, base_url, correlation_header="Schwab-Client-CorrelId")
        self._clock = clock

    def authorize_url(self, state: str, code_challenge: str) -> str:
        """Where to send the user to log in and approve the app."""
        query = urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "response_type": "code",
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.http.url('/v1/oauth/authorize')}?{query}"

    def exchange_code(self, code: str, code_verifier: str) -> OAuthTokens:
        """Trade the callback's authorization code (with the PKCE verifier) for tokens."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": code_verifier,
        }
        try:
            return self._tokens_from(self._token_request(form), None, None)
        except TokenExpiredError as exc:
            raise AuthenticationError("Schwab refused the login; please connect again.", details=exc.details) from exc

    def refresh(self, refresh_token: str, issued_at: datetime | None = None) -> OAuthTokens:
        """New tokens from a refresh token; TokenExpiredError when it is dead (user must log in)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        try:
            body = self._token_request(form)
        except TokenExpiredError:
            raise
        except AuthenticationError as exc:
            raise TokenExpiredError(details=exc.details) from exc
        return self._tokens_from(body, refresh_token, issued_at)

    def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        auth = (self.client_id, self._client_secret)
        response = self.http.read("POST", TOKEN_PATH, data=form, auth=auth, headers={"Accept": "application/json"})
        body = decode_json(response) if response.status_code == 200 else error_body(response)
        if response.status_code == 200 and isinstance(body, dict):
            return body
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        details = {"provider": PROVIDER, "status": response.status_code, "error": _safe_code(error)}
        if response.status_code in (400, 401) and error in _DEAD_REFRESH_ERRORS:
            raise TokenExpiredError(details=details)
        raise AuthenticationError(details=details)

    def _tokens_from(self, body: dict[str, Any], old_refresh: str | None, old_issued: datetime | None) -> OAuthTokens:
        access, refresh = body.get("access_token"), body.get("refresh_token") or old_refresh
        if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
            raise AuthenticationError("Schwab's token answer carried no tokens.", details={"provider": PROVIDER})
        now = self._clock()
        # The refresh token's 7-day life starts at login: keep its issue time when it is not rotated.
        issued = old_issued if (old_issued is not None and refresh == old_refresh) else now
        expires_in = int(body.get("expires_in") or ACCESS_LIFETIME_SECONDS)
        return OAuthTokens(access, refresh, now + timedelta(seconds=expires_in), issued)


class WriteThrottle:
    """At most ``per_minute`` order writes in any 60-second window of this process; waits when full.

    A sliding window rather than a refilling bucket, so a full burst can never be followed by
    another one inside the same minute (Schwab allows up to 120 writes per minute per app).
    """

    def __init__(
        self,
        per_minute: int = ORDER_WRITES_PER_MINUTE,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.per_minute = per_minute
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        """Return once one more write fits in the window (sleeping if needed), and count it."""
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and now - self._sent[0] >= 60:
                    self._sent.popleft()
                if len(self._sent) < self.per_minute:
                    self._sent.append(now)
                    return
                wait = 60 - (now - self._sent[0])
            self._sleep(wait)


# Schwab's write limit is per app, and every connection in a process uses the same app: share it.
_PROCESS_WRITE_THROTTLE = WriteThrottle(ORDER_WRITES_PER_MINUTE)


class SchwabClient(Broker):
    """One Schwab connection: a token store plus the app's credentials.

    ``write_throttle`` is called before every place/replace/cancel and may block; by default all
    clients of this process share one 120-per-minute window (a Redis-backed one can be passed).
    """

    capabilities = Capabilities(
        native_stop=True,
        stop_limit=True,
        trailing_stop=True,
        bracket=True,
        replace=True,
        fractional_quantity=False,
        always_open=False,
        max_symbols_per_quote=200,
        order_writes_per_minute=ORDER_WRITES_PER_MINUTE,
    )

    def __init__(
        self,
        store: TokenStore,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str = "",
        base_url: str = DEFAULT_BASE_URL,
        policy: HttpPolicy | None = None,
        write_throttle: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.http = BrokerHttp(
            PROVIDER, base_url, policy=policy, correlation_header="Schwab-Client-CorrelId", sleep=sleep
        )
        self.oauth = SchwabOAuth(client_id, client_secret, redirect_uri, http=self.http, clock=clock)
        self._store = store
        self._throttle = write_throttle or _PROCESS_WRITE_THROTTLE
        self._clock = clock
        self._tokens: OAuthTokens | None = None

    # ------------------------------------------------------------------------ accounts and data

    def accounts(self) -> list[BrokerAccount]:
        """Account hashes with masked numbers ("…1234"): the full number is never kept."""
        rows = self._get("/trader/v1/accounts/accountNumbers") or []
        return [
            BrokerAccount(account_id=str(row["hashValue"]), display_number="…" + str(row["accountNumber"])[-4:])
            for row in rows
        ]

    def balance(self, account_id: str) -> Balance:
        """Cash, buying power and liquidation value of one account."""
        return parse_balance(self._securities_account(account_id))

    def positions(self, account_id: str) -> list[BrokerPosition]:
        """Open positions; shorts have negative quantities."""
        return [parse_position(p) for p in self._securities_account(account_id).get("positions") or []]

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Quotes in batches; a symbol with a missing, zero or negative price is skipped with a warning."""
        wanted = list(dict.fromkeys(symbol.upper() for symbol in symbols))
        size = self.capabilities.max_symbols_per_quote
        found: dict[str, Quote] = {}
        for start in range(0, len(wanted), size):
            params = {"symbols": ",".join(wanted[start : start + size]), "fields": "quote"}
            found |= self._usable_quotes(self._get("/marketdata/v1/quotes", params) or {})
        return found

    def _usable_quotes(self, body: dict[str, Any]) -> dict[str, Quote]:
        usable = {}
        for symbol, entry in body.items():
            if symbol == "errors" or not isinstance(entry, dict):  # "errors": {"invalidSymbols": [...]}
                continue
            problem = quote_problem(entry)
            if problem:
                log.warning("schwab.quote_skipped", symbol=symbol, reason=problem)
                continue
            usable[symbol] = parse_quote(symbol, entry)
        return usable

    def market_hours(self, symbol: str, at: datetime) -> MarketHours:
        """US equity hours on ``at``'s New York date (every Schwab symbol shares them)."""
        body = self._get("/marketdata/v1/markets", {"markets": "equity", "date": eastern_date(at)})
        return parse_market_hours(body or {}, at)

    def price_increment(self, symbol: str, price: Decimal) -> Decimal:
        """Schwab's tick by price: a cent at $1 or above, a hundredth of a cent below (no call)."""
        return price_step(price)

    def candles(self, symbol: str, interval: CandleInterval, start: datetime, end: datetime) -> list[Candle]:
        """Regular-session bars from GET /marketdata/v1/pricehistory (no hourly bars at Schwab)."""
        body = self._get("/marketdata/v1/pricehistory", price_history_params(symbol.upper(), interval, start, end))
        bars = [parse_candle(row) for row in (body or {}).get("candles") or []]
        return sorted((bar for bar in bars if start <= bar.time < end), key=lambda bar: bar.time)

    def transactions(self, account_id: str, since: datetime, until: datetime) -> list[Transaction]:
        """Trade transactions in a window."""
        check_window(since, until, None)
        params = {"startDate": schwab_time(since), "endDate": schwab_time(until), "types": "TRADE"}
        rows = self._get(f"{_account_path(account_id)}/transactions", params) or []
        return [parse_transaction(row) for row in rows]

    # ------------------------------------------------------------------------ orders

    def place_order(self, account_id: str, request: OrderRequest) -> BrokerOrder:
        """POST the order once; its id comes only from the Location header (no client order id)."""
        path, body = f"{_account_path(account_id)}/orders", build_order(request)
        response = self._write("POST", path, request.client_order_id, json=body)
        return submitted_order(accepted_order_id(response, request), request)

    def replace_order(self, account_id: str, broker_order_id: str, request: OrderRequest) -> BrokerOrder:
        """PUT a full order over a working one; the answer's Location carries the NEW id."""
        path, body = _order_path(account_id, broker_order_id), build_order(request)
        response = self._write("PUT", path, request.client_order_id, json=body)
        return submitted_order(accepted_order_id(response, request), request)

    def cancel_order(self, account_id: str, broker_order_id: str) -> None:
        """DELETE the order; OrderCancellationError with the broker's reason when refused."""
        response = self._write("DELETE", _order_path(account_id, broker_order_id))
        if response.status_code not in (200, 204):
            reason = broker_message(error_body(response)) or "no reason given"
            raise OrderCancellationError(
                f"Schwab refused to cancel the order: {reason}",
                details={"provider": PROVIDER, "status": response.status_code, "order_id": broker_order_id},
            )

    def get_order(self, account_id: str, broker_order_id: str) -> BrokerOrder:
        """One order with its status mapped and its fills."""
        return parse_order(self._get(_order_path(account_id, broker_order_id)))

    def fills(self, account_id: str, broker_order_id: str) -> list[Fill]:
        """Executions of one order (from the order's activity collection)."""
        return list(self.get_order(account_id, broker_order_id).fills)

    def list_orders(
        self, account_id: str, since: datetime, until: datetime, status: OrderStatus | None = None
    ) -> list[BrokerOrder]:
        """Orders entered in a window of at most 60 days; ``client_order_id`` is None (Schwab has none)."""
        check_window(since, until, MAX_ORDER_WINDOW)
        params = {"fromEnteredTime": schwab_time(since), "toEnteredTime": schwab_time(until)}
        if status in SCHWAB_STATUS_FILTER:
            params["status"] = SCHWAB_STATUS_FILTER[status]
        rows = self._get(f"{_account_path(account_id)}/orders", params) or []
        orders = [order for order in map(_parsed_or_none, flatten_orders(rows)) if order is not None]
        return [order for order in orders if status is None or order.status == status]

    # ------------------------------------------------------------------------ plumbing

    def _securities_account(self, account_id: str) -> dict[str, Any]:
        body = self._get(_account_path(account_id), {"fields": "positions"}) or {}
        account = body.get("securitiesAccount")
        if not isinstance(account, dict):
            raise DataValidationError(details={"provider": PROVIDER, "field": "securitiesAccount"})
        return account

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET with the access token; on a 401, refresh once and retry once."""
        token = self._access_token()
        try:
            response = self.http.read("GET", path, params=params, headers=_auth(token))
        except TokenExpiredError:
            raise
        except AuthenticationError:
            token = self._refresh(stale=token).access_token
            response = self.http.read("GET", path, params=params, headers=_auth(token))
        return ok_json(response)

    def _write(self, method: str, path: str, client_order_id: str | None = None, **kwargs: Any) -> requests.Response:
        """One throttled write. A 401 means Schwab refused it unseen: refresh, report a temporary error."""
        self._throttle()
        token = self._access_token()
        try:
            return self.http.write(method, path, headers=_auth(token), **kwargs)
        except UnknownOrderOutcomeError as exc:
            exc.details["client_order_id"] = client_order_id  # so the caller reconciles the right order
            raise
        except TokenExpiredError:
            raise
        except AuthenticationError as exc:
            self._refresh(stale=token)
            raise BrokerTemporaryError(
                "Schwab refused the access token; the request was not carried out.", details={"provider": PROVIDER}
            ) from exc

    def refresh_if_expiring(self) -> bool:
        """Refresh the access token now if it expires within 5 minutes (proactive upkeep); True if so."""
        tokens = self._store.load()
        if not self._expiring(tokens):
            return False
        self._refresh(stale=tokens.access_token)
        return True

    def _access_token(self) -> str:
        """A valid access token, refreshed first when it expires within 5 minutes."""
        tokens = self._tokens or self._store.load()
        if self._expiring(tokens):
            tokens = self._refresh(stale=tokens.access_token)
        self._tokens = tokens
        return tokens.access_token

    def _refresh(self, stale: str) -> OAuthTokens:
        """One refresher at a time: under the lock re-load, and refresh only if nobody else did."""
        with self._store.refresh_lock():
            current = self._store.load()
            if current.access_token == stale or self._expiring(current):
                current = self.oauth.refresh(current.refresh_token, current.refresh_issued_at)
                self._store.save(current)
                log.info("schwab.tokens_refreshed", expires_at=current.access_expires_at.isoformat())
        self._tokens = current
        return current

    def _expiring(self, tokens: OAuthTokens) -> bool:
        return tokens.access_expires_at - self._clock() <= REFRESH_MARGIN


def _parsed_or_none(row: Mapping[str, Any]) -> BrokerOrder | None:
    """A listed order, or None (logged) for one we do not trade, e.g. an option placed by hand."""
    try:
        return parse_order(row)
    except DataValidationError as exc:
        log.warning("schwab.order_skipped", order_id=str(row.get("orderId")), details=exc.details)
        return None


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def _account_path(account_id: str) -> str:
    return f"/trader/v1/accounts/{quote(account_id, safe='')}"


def _order_path(account_id: str, broker_order_id: str) -> str:
    return f"{_account_path(account_id)}/orders/{quote(broker_order_id, safe='')}"


def _safe_code(error: str) -> str:
    return error if _ERROR_CODE.match(error) else "unknown"
