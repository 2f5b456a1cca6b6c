"""/api/v1/positions and /api/v1/trades: what is held, marked at the latest quote, closing, history."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from models import Order, Trade
from utils.services import api_reads, positions
from utils.tasks.trading import enqueue_submit
from utils.web.api.auth import caller, order_write_limit
from utils.web.api.base import ApiBlueprint
from utils.web.api.schemas import (
    OrderSchema,
    PositionSchema,
    StopMoveSchema,
    TradeListArgsSchema,
    TradePageSchema,
    TradeSchema,
    page_body,
)

blp = ApiBlueprint(
    "api_positions",
    __name__,
    url_prefix="/api/v1/positions",
    tag="Positions",
    description="Open positions with their protection and unrealized P&L; close one at market or move its stop.",
)
trades_blp = ApiBlueprint(
    "api_trades", __name__, url_prefix="/api/v1/trades", tag="Trades", description="Your trades, open and closed."
)


@blp.route("", methods=["GET"])
@blp.response(200, PositionSchema(many=True))
def list_positions() -> list[dict[str, Any]]:
    """Open positions per connection and symbol, with unrealized P&L at the latest quote.

    mark_price and unrealized_pnl are null when no quote can be had.
    """
    held = positions.open_positions(caller())
    marks = positions.marks(held)
    return [_row(position, marks.get((position.connection_id, position.symbol))) for position in held]


@blp.route("/<int:trade_id>/close", methods=["POST"])
@order_write_limit
@blp.response(202, OrderSchema)
def close(trade_id: int) -> Order:
    """Close one trade at market (202: the exit is stored, then sent by a worker).

    A stop-loss held at the broker is cancelled first, so the position is never sold twice.
    """
    exit_order = positions.close_position(caller(), trade_id)
    enqueue_submit(exit_order.id)
    return exit_order


@blp.route("/<int:trade_id>/stop", methods=["POST"])
@order_write_limit
@blp.arguments(StopMoveSchema)
@blp.response(200, TradeSchema)
def move_stop(body: dict[str, Any], trade_id: int) -> Trade:
    """Move an open trade's stop-loss; a stop held at the broker is cancelled and placed again there.

    The new price is judged against the market now, not the entry: a 422 says why it was refused
    (wrong side of the bid/ask, too far from it, off the price increment, or no current quote).
    A stop in profit (break-even, locked gains) is fine while the market is beyond it.
    """
    return positions.move_stop(caller(), trade_id, body["stop_price"])


@trades_blp.route("", methods=["GET"])
@trades_blp.arguments(TradeListArgsSchema, location="query")
@trades_blp.response(200, TradePageSchema)
def list_trades(query: api_reads.ListQuery) -> dict[str, Any]:
    """The caller's trades, newest first, filtered by status, symbol and connection."""
    return page_body(api_reads.trades(caller(), query))


def _row(position: positions.Position, mark: positions.Mark | None) -> dict[str, Any]:
    priced = mark is not None and mark.price is not None
    return {
        "connection_id": position.connection_id,
        "symbol": position.symbol,
        "quantity": position.quantity,
        "average_price": position.average_price,
        "protection": position.protection,
        "mark_price": mark.price if priced and mark else None,
        "unrealized_pnl": sum(mark.unrealized_pnl.values(), Decimal(0)) if priced and mark else None,
        "trade_ids": [trade.id for trade in position.trades],
    }
