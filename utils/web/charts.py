"""Chart pages and the JSON they draw from (our own origin; amounts as strings)."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from utils.brokers.base import CandleInterval
from utils.services import equity_history, price_charts

bp = Blueprint("charts", __name__, url_prefix="/charts")


@bp.get("/equity.json")
def equity() -> ResponseReturnValue:
    """The user's total equity at each snapshot of the last 30 days."""
    return jsonify(equity_history.equity_curve(current_user))


@bp.get("/daily-pnl.json")
def daily_pnl() -> ResponseReturnValue:
    """Realized P&L per UTC day of the last 30 days."""
    return jsonify(equity_history.daily_pnl(current_user))


@bp.get("/<int:connection_id>/<symbol>")
def price(connection_id: int, symbol: str) -> ResponseReturnValue:
    """A symbol's price chart with the entry, stop and take-profit of the user's open trades."""
    subject = price_charts.chart_subject(current_user, connection_id, symbol, request.args.get("interval", ""))
    return render_template("charts/price.html", subject=subject, intervals=list(CandleInterval))


@bp.get("/<int:connection_id>/<symbol>/candles.json")
def candles(connection_id: int, symbol: str) -> ResponseReturnValue:
    """Bars and trade levels for the price chart."""
    return jsonify(price_charts.price_chart(current_user, connection_id, symbol, request.args.get("interval", "")))
