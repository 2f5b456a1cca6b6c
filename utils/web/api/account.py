"""/api/v1 reads about the caller's account: connections, quotes, risk limits, trading state."""

from __future__ import annotations

from typing import Any

from models import BrokerConnection
from utils.brokers.base import Quote
from utils.risk.inputs import RiskLimits
from utils.services import api_reads, connections, risk, trading_state
from utils.web.api.auth import caller
from utils.web.api.base import ApiBlueprint
from utils.web.api.schemas import (
    ConnectionSchema,
    QuoteArgsSchema,
    QuoteSchema,
    RiskLimitsSchema,
    TradingStateSchema,
)

blp = ApiBlueprint(
    "api_account",
    __name__,
    url_prefix="/api/v1",
    tag="Account",
    description="Your broker connections, quotes, risk limits and trading state.",
)


@blp.route("/connections", methods=["GET"])
@blp.response(200, ConnectionSchema(many=True))
def list_connections() -> list[BrokerConnection]:
    """The caller's broker connections and their health (never a credential)."""
    return connections.list_connections(caller())


@blp.route("/quotes", methods=["GET"])
@blp.arguments(QuoteArgsSchema, location="query")
@blp.response(200, QuoteSchema(many=True))
def quotes(args: dict[str, Any]) -> list[Quote]:
    """Quotes for comma-separated symbols through one of the caller's connections.

    Quotes are shared for a few seconds; a symbol the broker does not know is left out.
    """
    return api_reads.quotes(caller(), args["connection_id"], args["symbols"].split(","))


@blp.route("/risk/limits", methods=["GET"])
@blp.response(200, RiskLimitsSchema)
def risk_limits() -> RiskLimits:
    """The caller's effective risk limits (their own where an admin set them, else the defaults)."""
    return risk.limits_for(caller())


@blp.route("/trading-state", methods=["GET"])
@blp.response(200, TradingStateSchema)
def trading_states() -> dict[str, Any]:
    """The caller's own trading state and the platform-wide kill switch."""
    return {"user": trading_state.user_trading_state(caller()), "platform": trading_state.global_trading_state()}
