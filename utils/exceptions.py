"""The ArbionTrader exception tree and its JSON error envelope.

Every error a caller can see is an ``ArbionError`` subclass with an HTTP status and a stable
machine ``code``. The web layer's single handler (utils/web/errors.py) turns them into
``{"error": {"code", "message", "details"}, "request_id"}`` for API clients and a friendly page
for browsers. Docstrings say who raises and who handles each branch.
"""

from __future__ import annotations

from typing import Any


class ArbionError(Exception):
    """Base of every expected error. Raised by services; rendered by the web error handler."""

    status = 500
    code = "internal_error"
    default_message = "Something went wrong."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)

    def envelope(self, request_id: str | None) -> dict[str, Any]:
        """The JSON body sent to API clients."""
        return error_envelope(self.code, self.message, self.details, request_id)


def error_envelope(code: str, message: str, details: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """``{"error": {"code", "message", "details"}, "request_id"}``: the one error shape of the API."""
    return {"error": {"code": code, "message": message, "details": details}, "request_id": request_id}


# ---------------------------------------------------------------------------- request and access


class InvalidInputError(ArbionError):
    """Bad input from a caller (form, API body, CLI option). Raised by services' validation."""

    status = 422
    code = "invalid_input"
    default_message = "The request is not valid."


class AuthenticationRequiredError(ArbionError):
    """The caller is not logged in or the API token is missing or invalid."""

    status = 401
    code = "authentication_required"
    default_message = "Please log in."


class PermissionDeniedError(ArbionError):
    """The caller is known but may not do this (role guard, object ownership)."""

    status = 403
    code = "permission_denied"
    default_message = "You do not have permission to do that."


class NotFoundError(ArbionError):
    """The object does not exist or is not the caller's."""

    status = 404
    code = "not_found"
    default_message = "Not found."


class ConflictError(ArbionError):
    """The request conflicts with the current state (duplicate email, guarded admin action)."""

    status = 409
    code = "conflict"
    default_message = "That conflicts with the current state."


class TooManyAttemptsError(ArbionError):
    """Too many failed password or code checks for this account from this address, or from
    everywhere (services.credential_checks); ``details["retry_after"]`` is in seconds."""

    status = 429
    code = "rate_limited"
    default_message = "Too many attempts. Please wait a few minutes and try again."


# ---------------------------------------------------------------------------- trading


class TradingError(ArbionError):
    """Base of order and trade errors raised by services.orders."""

    status = 422
    code = "trading_error"
    default_message = "The order could not be processed."


class OrderExecutionError(TradingError):
    """The broker did not execute the order as asked."""

    status = 502
    code = "order_execution_failed"
    default_message = "The broker did not execute the order."


class InsufficientFundsError(TradingError):
    """Not enough cash or buying power (from risk checks or a broker rejection)."""

    code = "insufficient_funds"
    default_message = "Insufficient funds or buying power for this order."


class InvalidOrderError(TradingError):
    """The order itself is malformed (quantity, prices, stop on the wrong side)."""

    code = "invalid_order"
    default_message = "The order is not valid."


class MarketClosedError(TradingError):
    """The market for this symbol is closed for the requested session."""

    status = 409
    code = "market_closed"
    default_message = "The market is closed for this order."


class SymbolNotFoundError(TradingError):
    """The broker does not know the symbol."""

    status = 404
    code = "symbol_not_found"
    default_message = "Unknown symbol."


class OrderCancellationError(TradingError):
    """A cancel was refused (already filled, not cancelable)."""

    status = 409
    code = "order_cancellation_failed"
    default_message = "The order could not be cancelled."


class OrderRejectedError(TradingError):
    """The broker refused the order; ``message`` is its reason in readable words."""

    code = "order_rejected"
    default_message = "The broker rejected the order."


class UnknownOrderOutcomeError(TradingError):
    """A write (place, replace) whose result we did not see. Never resend: reconcile instead.

    Raised by broker clients on a timeout, a dropped connection, a 5xx, or an answer without an
    order id; ``details`` carries the client order id and what is known.
    """

    status = 502
    code = "order_outcome_unknown"
    default_message = "The broker's answer was lost; the order will be reconciled, not resent."


class IllegalTransitionError(TradingError):
    """An order or trade state change the state machine forbids. A programming error."""

    status = 409
    code = "illegal_transition"
    default_message = "That state change is not allowed."


# ---------------------------------------------------------------------------- risk


class RiskLimitExceededError(ArbionError):
    """The risk engine rejected the order; ``details["reasons"]`` lists why. No broker call."""

    status = 422
    code = "risk_limit_exceeded"
    default_message = "The order exceeds a risk limit."


class DailyTradingLimitExceededError(RiskLimitExceededError):
    """Daily order count or daily loss limit reached."""

    code = "daily_limit_exceeded"
    default_message = "The daily trading limit has been reached."


class PositionSizeLimitError(RiskLimitExceededError):
    """The order would exceed a position or exposure limit."""

    code = "position_size_limit"
    default_message = "The order would exceed the position size limit."


class StopLossNotSetError(RiskLimitExceededError):
    """An entry without the required stop-loss."""

    code = "stop_loss_required"
    default_message = "A stop-loss is required for this order."


class MarginCallError(RiskLimitExceededError):
    """The account is in a margin call: only reducing orders are allowed."""

    code = "margin_call"
    default_message = "The account is in a margin call."


# ---------------------------------------------------------------------------- market data


class MarketDataError(ArbionError):
    """Base of quote and price-history errors."""

    status = 503
    code = "market_data_error"
    default_message = "Market data is not available."


class DataNotAvailableError(MarketDataError):
    """No quote or history for the symbol right now."""

    code = "data_not_available"


class StaleDataError(MarketDataError):
    """The latest quote is too old to act on."""

    code = "stale_data"
    default_message = "The latest price is too old to act on."


class DataValidationError(MarketDataError):
    """A broker payload was missing fields or had impossible values (zero, negative prices)."""

    status = 502
    code = "data_validation_failed"
    default_message = "The broker sent data that failed validation."


# ---------------------------------------------------------------------------- broker API


class BrokerAPIError(ArbionError):
    """Base of errors talking to a broker. Raised by utils/brokers clients only."""

    status = 502
    code = "broker_error"
    default_message = "The broker could not complete the request."


class AuthenticationError(BrokerAPIError):
    """The broker refused our credentials: the connection needs attention."""

    code = "broker_authentication_failed"
    default_message = "The broker refused the connection's credentials."


class TokenExpiredError(AuthenticationError):
    """The broker's refresh token is dead: the user must reconnect."""

    code = "broker_reconnect_needed"
    default_message = "The broker connection has expired; please reconnect."


class BrokerNotConfiguredError(BrokerAPIError):
    """The platform has no app registration for this broker (an operator must set one)."""

    status = 503
    code = "broker_not_configured"
    default_message = "This broker is not set up on this platform yet; ask your administrator."


class BrokerTemporaryError(BrokerAPIError):
    """A failure worth retrying later (5xx, timeout before the broker saw the request)."""

    status = 503
    code = "broker_unavailable"
    default_message = "The broker is temporarily unavailable."


class RateLimitExceededError(BrokerTemporaryError):
    """The broker answered 429; ``details["retry_after"]`` says how long to wait."""

    code = "broker_rate_limited"
    default_message = "The broker is rate limiting us; try again shortly."


class APIConnectionError(BrokerTemporaryError):
    """The broker could not be reached."""

    code = "broker_unreachable"
    default_message = "The broker could not be reached."


# ---------------------------------------------------------------------------- platform


class ConfigurationError(ArbionError):
    """Unsafe or missing settings; raised at startup so the process refuses to run."""

    code = "configuration_error"
    default_message = "The platform is not configured correctly."


class DatabaseError(ArbionError):
    """The database is unreachable or refused the operation."""

    status = 503
    code = "database_unavailable"
    default_message = "The database is unavailable."


class QueueUnavailableError(ArbionError):
    """Redis (the task queue, rate limits, cache) is unreachable. Raised by the order service before
    it stores an entry, and rendered for any request that needed Redis while it was down."""

    status = 503
    code = "queue_unavailable"
    default_message = "The platform's task queue is unreachable right now; try again in a minute."


class CredentialUnavailableError(ArbionError):
    """A stored credential could not be decrypted; its connection has been disabled."""

    status = 409
    code = "credential_unavailable"
    default_message = "This connection's stored credentials cannot be read; please reconnect."


# ---------------------------------------------------------------------------- strategies and AI


class StrategyExecutionError(ArbionError):
    """A strategy failed while producing signals."""

    code = "strategy_failed"
    default_message = "The strategy failed."


class AIModelError(ArbionError):
    """An AI model call failed or returned unusable output."""

    status = 502
    code = "ai_model_failed"
    default_message = "The AI model could not answer."


class PromptInjectionDetectedError(ArbionError):
    """User-supplied text tried to override the model's instructions."""

    status = 400
    code = "prompt_injection_detected"
    default_message = "The request was refused."
