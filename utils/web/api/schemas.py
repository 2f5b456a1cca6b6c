"""The REST API's request and response shapes (marshmallow); money and quantities are strings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_dump, post_load, validate

from models import INTEGER_MAX
from utils.enums import OrderStatus, OrderType, TimeInForce, TradeStatus
from utils.money import decimal_text, parse_decimal
from utils.services import risk_limits
from utils.services.api_reads import MAX_PER_PAGE, ListQuery
from utils.services.paging import Page

ORDER_SIDES = ("buy", "sell")
ID_RANGE = validate.Range(min=1, max=INTEGER_MAX)


class DecimalString(fields.Field):
    """A decimal sent and answered as a JSON string ("0.01"); a JSON float is refused, since it
    may already have lost digits. Whole numbers are accepted as integers too."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"type": "string", "format": "decimal", "example": "0.01"} | kwargs.pop("metadata", {})
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(self, value: Decimal | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else decimal_text(value)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationError('Send a decimal number as a string, e.g. "0.01".')
        try:
            return parse_decimal(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


def object_id(**kwargs: Any) -> fields.Integer:
    """The id of a stored row: a whole number the id columns can hold (anything else is a 422)."""
    return fields.Integer(validate=ID_RANGE, **kwargs)


# ---------------------------------------------------------------------------------- errors


class ErrorBodySchema(Schema):
    """What went wrong: a stable code, readable words, and details (``fields`` on a 422)."""

    code = fields.String(required=True, metadata={"example": "invalid_input"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorEnvelopeSchema(Schema):
    """Every error answer of the API."""

    error = fields.Nested(ErrorBodySchema, required=True)
    request_id = fields.String(allow_none=True)


# ---------------------------------------------------------------------------------- listings


class PageArgsSchema(Schema):
    """Which page of a listing (newest first)."""

    page = fields.Integer(load_default=1, validate=ID_RANGE)
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PER_PAGE))


class OrderListArgsSchema(PageArgsSchema):
    """Order listing filters."""

    status = fields.String(validate=validate.OneOf([status.value for status in OrderStatus]))
    symbol = fields.String(validate=validate.Length(max=20))
    connection_id = object_id()

    @post_load
    def _query(self, data: dict[str, Any], **kwargs: Any) -> ListQuery:
        return ListQuery(**data)


class TradeListArgsSchema(OrderListArgsSchema):
    """Trade listing filters."""

    status = fields.String(validate=validate.OneOf([status.value for status in TradeStatus]))


class PageSchema(Schema):
    """The paging part of a listing's answer."""

    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)
    pages = fields.Integer(required=True)


def page_body(page: Page[Any]) -> dict[str, Any]:
    """A listing's answer: its items with the paging numbers."""
    return {"items": page.items, "page": page.page, "per_page": page.per_page, "total": page.total, "pages": page.pages}


# ---------------------------------------------------------------------------------- orders


class OrderCreateSchema(Schema):
    """An entry order: ``sell`` opens a short; the protection levels ride on the trade."""

    connection_id = object_id(required=True, strict=True)
    symbol = fields.String(required=True, validate=validate.Length(min=1, max=20))
    side = fields.String(required=True, validate=validate.OneOf(ORDER_SIDES))
    quantity = DecimalString(required=True)
    order_type = fields.String(load_default="market", validate=validate.OneOf([t.value for t in OrderType]))
    time_in_force = fields.String(load_default="day", validate=validate.OneOf([t.value for t in TimeInForce]))
    limit_price = DecimalString(load_default=None, allow_none=True)
    stop_price = DecimalString(load_default=None, allow_none=True)
    trail_amount = DecimalString(load_default=None, allow_none=True)
    trail_percent = DecimalString(load_default=None, allow_none=True, metadata={"description": "0 < % < 100"})
    stop_loss_price = DecimalString(load_default=None, allow_none=True)
    take_profit_price = DecimalString(load_default=None, allow_none=True)
    trailing_stop_amount = DecimalString(load_default=None, allow_none=True)
    trailing_stop_percent = DecimalString(load_default=None, allow_none=True, metadata={"description": "0 < % < 100"})


class IdempotencyHeaderSchema(Schema):
    """A retry with the same key and body returns the same order; another body gets 409."""

    idempotency_key = fields.String(data_key="Idempotency-Key", validate=validate.Length(min=1, max=128))


class OrderReplaceSchema(Schema):
    """The new quantity and/or prices of a working entry (omitted ones stay)."""

    quantity = DecimalString(load_default=None)
    limit_price = DecimalString(load_default=None)
    stop_price = DecimalString(load_default=None)


class StopMoveSchema(Schema):
    """A trade's new stop-loss price, checked against the market now."""

    stop_price = DecimalString(
        required=True,
        metadata={
            "description": "Below the bid for a long, above the ask for a short; within your max stop "
            "distance of that price; on the instrument's price increment (never rounded)."
        },
    )


class ProtectionSchema(Schema):
    """The trade's stop-loss, take-profit and trailing stop, and where they live."""

    mode = fields.String(attribute="protection_mode", metadata={"enum": ["none", "native", "emulated"]})
    stop_loss_price = DecimalString(allow_none=True)
    take_profit_price = DecimalString(allow_none=True)
    trailing_stop_offset = DecimalString(allow_none=True)
    trailing_stop_percent = DecimalString(allow_none=True)
    detail = fields.String(attribute="protection_detail")


class OrderSchema(Schema):
    """An order as stored; ``status`` follows the order state machine."""

    id = fields.Integer()
    connection_id = fields.Integer()
    trade_id = fields.Integer(allow_none=True)
    replaces_order_id = fields.Integer(allow_none=True)
    purpose = fields.String()
    symbol = fields.String()
    side = fields.String(metadata={"enum": ["buy", "sell", "sell_short", "buy_to_cover"]})
    order_type = fields.String()
    time_in_force = fields.String()
    status = fields.String(metadata={"enum": [status.value for status in OrderStatus]})
    status_detail = fields.String()
    quantity = DecimalString()
    limit_price = DecimalString(allow_none=True)
    stop_price = DecimalString(allow_none=True)
    trail_offset = DecimalString(allow_none=True)
    trail_percent = DecimalString(allow_none=True)
    filled_quantity = DecimalString()
    remaining_quantity = DecimalString(allow_none=True)
    average_fill_price = DecimalString(allow_none=True)
    fees = DecimalString()
    broker_order_id = fields.String(allow_none=True)
    client_order_id = fields.String()
    protection = fields.Nested(ProtectionSchema, attribute="trade", allow_none=True)
    created_at = fields.AwareDateTime()
    submitted_at = fields.AwareDateTime(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)


class OrderPageSchema(PageSchema):
    """A page of orders."""

    items = fields.List(fields.Nested(OrderSchema))


# ---------------------------------------------------------------------------------- positions and trades


class TradeSchema(Schema):
    """One entry and its exits."""

    id = fields.Integer()
    connection_id = fields.Integer()
    symbol = fields.String()
    side = fields.String()
    status = fields.String(metadata={"enum": [status.value for status in TradeStatus]})
    quantity = DecimalString()
    filled_quantity = DecimalString()
    average_fill_price = DecimalString(allow_none=True)
    exit_filled_quantity = DecimalString()
    exit_average_price = DecimalString(allow_none=True)
    protection_mode = fields.String()
    stop_loss_price = DecimalString(allow_none=True)
    take_profit_price = DecimalString(allow_none=True)
    trailing_stop_offset = DecimalString(allow_none=True)
    trailing_stop_percent = DecimalString(allow_none=True)
    fees = DecimalString()
    realized_pnl = DecimalString(allow_none=True)
    opened_at = fields.AwareDateTime(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()


class TradePageSchema(PageSchema):
    """A page of trades."""

    items = fields.List(fields.Nested(TradeSchema))


class PositionSchema(Schema):
    """What one connection holds in one symbol (negative quantity: short), marked at the latest quote."""

    connection_id = fields.Integer()
    symbol = fields.String()
    quantity = DecimalString()
    average_price = DecimalString()
    protection = fields.String(metadata={"enum": ["unprotected", "emulated", "native"]})
    mark_price = DecimalString(allow_none=True)
    unrealized_pnl = DecimalString(allow_none=True)
    trade_ids = fields.List(fields.Integer())


# ---------------------------------------------------------------------------------- account


class ConnectionSchema(Schema):
    """A broker connection; no credential or token is ever part of it."""

    id = fields.Integer()
    provider = fields.String()
    label = fields.String()
    status = fields.String()
    status_detail = fields.String()
    account_number_last4 = fields.String(allow_none=True)
    last_tested_at = fields.AwareDateTime(allow_none=True)
    reconciled_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()


class QuoteArgsSchema(Schema):
    """Comma-separated symbols and the connection whose broker prices them."""

    symbols = fields.String(required=True, metadata={"example": "AAPL,BTC-USD"})
    connection_id = object_id(required=True)


class QuoteSchema(Schema):
    """Top of book for one symbol."""

    symbol = fields.String()
    bid = DecimalString()
    ask = DecimalString()
    last = DecimalString()
    mark = DecimalString()
    time = fields.AwareDateTime()


class TradingStatusSchema(Schema):
    """A trading state (active, reducing, halted) and why."""

    state = fields.String(metadata={"enum": ["active", "reducing", "halted"]})
    reason = fields.String()


class TradingStateSchema(Schema):
    """The caller's own trading state and the platform-wide kill switch."""

    user = fields.Nested(TradingStatusSchema)
    platform = fields.Nested(TradingStatusSchema)


class RiskLimitsSchema(Schema):
    """Effective risk limits (null: no limit)."""

    max_order_notional = DecimalString(allow_none=True)
    max_position_notional = DecimalString(allow_none=True)
    max_total_exposure = DecimalString(allow_none=True)
    max_open_positions = fields.Integer(allow_none=True)
    max_orders_per_day = fields.Integer(allow_none=True)
    max_daily_loss = DecimalString(allow_none=True)
    symbol_allowlist = fields.List(fields.String())
    symbol_denylist = fields.List(fields.String())
    equities_market_hours_only = fields.Boolean()
    max_quote_age_seconds = fields.Integer()
    require_stop_loss = fields.Boolean()
    max_stop_distance_pct = DecimalString(allow_none=True)

    @post_dump
    def _sorted_lists(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        for name in risk_limits.SYMBOL_LISTS:
            data[name] = sorted(data.get(name) or [])
        return data


class RiskLimitsUpdateSchema(Schema):
    """Limits to change for one user; null resets one to the platform default."""

    max_order_notional = DecimalString(allow_none=True)
    max_position_notional = DecimalString(allow_none=True)
    max_total_exposure = DecimalString(allow_none=True)
    max_daily_loss = DecimalString(allow_none=True)
    max_open_positions = fields.Integer(allow_none=True, strict=True)
    max_orders_per_day = fields.Integer(allow_none=True, strict=True)
    max_quote_age_seconds = fields.Integer(allow_none=True, strict=True)
    equities_market_hours_only = fields.Boolean(allow_none=True)
    require_stop_loss = fields.Boolean(allow_none=True)
    symbol_allowlist = fields.String(allow_none=True, metadata={"example": "AAPL,MSFT"})
    symbol_denylist = fields.String(allow_none=True)
    max_stop_distance_pct = DecimalString(allow_none=True)


# ---------------------------------------------------------------------------------- admin


class AuditArgsSchema(Schema):
    """Audit filters: actor e-mail and action by prefix, subject "Type" or "Type 12", UTC dates."""

    actor = fields.String(load_default="", validate=validate.Length(max=254))
    action = fields.String(load_default="", validate=validate.Length(max=80))
    subject = fields.String(load_default="", validate=validate.Length(max=80))
    since = fields.Date(load_default=None)
    until = fields.Date(load_default=None)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_PER_PAGE))


class AuditEntrySchema(Schema):
    """One audit record (details are redacted when stored)."""

    id = fields.Integer()
    created_at = fields.AwareDateTime()
    actor_email = fields.String()
    action = fields.String()
    subject_type = fields.String()
    subject_id = fields.String()
    details = fields.Dict()
    ip_address = fields.String()
    request_id = fields.String()
