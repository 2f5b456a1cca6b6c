"""/api/v1/orders: place (202, sent by a worker), list, read, cancel and replace orders."""

from __future__ import annotations

from typing import Any

from models import Order
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.exceptions import InvalidInputError
from utils.services import api_reads, order_tracking, orders
from utils.services.order_tickets import OrderTicket
from utils.tasks.trading import enqueue_submit
from utils.web.api.auth import caller, order_write_limit
from utils.web.api.base import ApiBlueprint
from utils.web.api.schemas import (
    IdempotencyHeaderSchema,
    OrderCreateSchema,
    OrderListArgsSchema,
    OrderPageSchema,
    OrderReplaceSchema,
    OrderSchema,
    page_body,
)

blp = ApiBlueprint(
    "api_orders",
    __name__,
    url_prefix="/api/v1/orders",
    tag="Orders",
    description="Place entries (risk-checked, stored, then sent by a worker); follow, cancel or change them.",
)
ENTRY_SIDE = {"buy": OrderSide.BUY, "sell": OrderSide.SELL_SHORT}
# The ticket's field names that this API spells differently (a 422 names the field as sent).
API_FIELDS = {"trail_offset": "trail_amount", "trailing_stop_offset": "trailing_stop_amount"}


@blp.route("", methods=["POST"])
@order_write_limit
@blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
@blp.arguments(OrderCreateSchema)
@blp.response(202, OrderSchema)
def place(body: dict[str, Any], idempotency_key: str | None = None) -> Order:
    """Place an entry order (202: stored, then sent to the broker by a worker).

    202 means the order passed validation and the risk engine and is stored as pending_submit; a
    worker sends it, so follow it with GET /orders/{id}. A repeat with the same Idempotency-Key and
    body returns the same order; the same key with another body is a 409. ``sell`` opens a short.
    """
    order = _placed(_ticket(body, idempotency_key))
    if order.status == OrderStatus.PENDING_SUBMIT:
        enqueue_submit(order.id)
    return order


@blp.route("", methods=["GET"])
@blp.arguments(OrderListArgsSchema, location="query")
@blp.response(200, OrderPageSchema)
def list_orders(query: api_reads.ListQuery) -> dict[str, Any]:
    """The caller's orders, newest first, filtered by status, symbol and connection."""
    return page_body(api_reads.orders(caller(), query))


@blp.route("/<int:order_id>", methods=["GET"])
@blp.response(200, OrderSchema)
def get_order(order_id: int) -> Order:
    """One of the caller's orders (404 for anyone else's)."""
    return orders.get_order(caller(), order_id)


@blp.route("/<int:order_id>/cancel", methods=["POST"])
@order_write_limit
@blp.response(200, OrderSchema)
def cancel(order_id: int) -> Order:
    """Cancel a live order; the answer shows the broker's view right after (cancelled or filled)."""
    return order_tracking.cancel_order(caller(), order_id)


@blp.route("/<int:order_id>/replace", methods=["POST"])
@order_write_limit
@blp.arguments(OrderReplaceSchema)
@blp.response(200, OrderSchema)
def replace(body: dict[str, Any], order_id: int) -> Order:
    """Change a working entry's quantity or prices; answers the new order (the old one is replaced)."""
    return order_tracking.replace_order(caller(), order_id, **body)


def _placed(ticket: OrderTicket) -> Order:
    """The gateway's answer; a refused field is named as this API spells it."""
    try:
        return orders.place_order(caller(), ticket)
    except InvalidInputError as exc:
        field = exc.details.get("field")
        if field in API_FIELDS:
            exc.details["field"] = API_FIELDS[field]
        raise


def _ticket(body: dict[str, Any], idempotency_key: str | None) -> OrderTicket:
    return OrderTicket(
        connection_id=body["connection_id"],
        symbol=body["symbol"],
        side=ENTRY_SIDE[body["side"]],
        quantity=body["quantity"],
        order_type=OrderType(body["order_type"]),
        time_in_force=TimeInForce(body["time_in_force"]),
        limit_price=body["limit_price"],
        stop_price=body["stop_price"],
        trail_offset=body["trail_amount"],
        trail_percent=body["trail_percent"],
        stop_loss_price=body["stop_loss_price"],
        take_profit_price=body["take_profit_price"],
        trailing_stop_offset=body["trailing_stop_amount"],
        trailing_stop_percent=body["trailing_stop_percent"],
        idempotency_key=idempotency_key,
    )
