"""The trader's orders: working orders (live), cancel and replace, the history and its CSV, the ticket."""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from models import BrokerConnection, Order
from utils.exceptions import ArbionError
from utils.risk.engine import RiskDecision
from utils.services import connections, order_checks, order_history, order_tracking, orders
from utils.tasks.trading import enqueue_submit
from utils.web.csv_export import csv_download
from utils.web.feedback import NOT_FOUND, attempt, flash_errors
from utils.web.formatting import amount_text
from utils.web.forms import ActionForm
from utils.web.order_forms import HistoryFilterForm, ReplaceForm, TicketForm, connection_label

bp = Blueprint("orders", __name__, url_prefix="/orders")
CSV_HEADER = [
    "created_at", "connection", "symbol", "side", "order_type", "purpose", "status", "quantity", "filled_quantity",
    "remaining_quantity", "average_fill_price", "limit_price", "stop_price", "trail_offset", "trail_percent",
    "time_in_force", "fees", "status_detail", "client_order_id", "broker_order_id",
]  # fmt: skip


@bp.get("/")
def index() -> ResponseReturnValue:
    """Working orders (refreshed live), then the filtered history in pages of 50."""
    mine = connections.list_connections(current_user)
    form = HistoryFilterForm(request.args, meta={"csrf": False}).offer(mine)
    page = order_history.history(current_user, form.order_filter(), request.args.get("page", 1, type=int))
    return render_template(
        "orders/index.html",
        working=order_history.working_orders(current_user),
        page=page,
        form=form,
        labels=_labels(mine),
        filters={name: value for name, value in request.args.items() if name != "page"},
        action_form=ActionForm(),
        replace_form=ReplaceForm(),
    )


@bp.get("/working")
def working() -> ResponseReturnValue:
    """The working-orders table alone (htmx polls it every 5 s)."""
    return render_template(
        "orders/_working.html",
        working=order_history.working_orders(current_user),
        labels=_labels(connections.list_connections(current_user)),
        action_form=ActionForm(),
        replace_form=ReplaceForm(),
    )


@bp.get("/history.csv")
def export() -> ResponseReturnValue:
    """The filtered history as CSV (cells a spreadsheet will not run as formulas)."""
    mine = connections.list_connections(current_user)
    where = HistoryFilterForm(request.args, meta={"csrf": False}).offer(mine).order_filter()
    labels = _labels(mine)
    rows = (_csv_row(order, labels) for order in order_history.export(current_user, where))
    return csv_download("orders.csv", CSV_HEADER, rows)


@bp.post("/<int:order_id>/cancel")
def cancel(order_id: int) -> ResponseReturnValue:
    """Cancel one working order (at the broker when it was sent)."""
    if ActionForm().validate_on_submit():
        attempt(
            lambda: order_tracking.cancel_order(current_user, order_id),
            f"Order {order_id}: cancel requested.",
            let_through=NOT_FOUND,
        )
    return redirect(url_for("orders.index"))


@bp.post("/<int:order_id>/replace")
def replace(order_id: int) -> ResponseReturnValue:
    """Change a working entry's quantity or prices (the broker replaces it with a new order)."""
    form = ReplaceForm()
    if not form.validate_on_submit():
        flash_errors(form)
        return redirect(url_for("orders.index"))
    new = attempt(
        lambda: order_tracking.replace_order(
            current_user,
            order_id,
            quantity=form.quantity.data,
            limit_price=form.limit_price.data,
            stop_price=form.stop_price.data,
        ),
        let_through=NOT_FOUND,
    )
    if new is not None:
        flash(f"Order {order_id} changed: it is now order {new.id} ({new.status.value.replace('_', ' ')}).", "info")
    return redirect(url_for("orders.index"))


@bp.get("/new")
def new() -> ResponseReturnValue:
    """The order ticket."""
    return _ticket_page(_ticket_form())


@bp.post("/new")
def place() -> ResponseReturnValue:
    """Place the entry (risk-checked and stored, then sent by a worker); rejections shown on the form."""
    form = _ticket_form()
    if not form.validate_on_submit():
        return _ticket_page(form, status=422)
    try:
        order = orders.place_order(current_user, form.ticket())
    except ArbionError as exc:
        return _ticket_page(form, error=exc, status=exc.status)
    enqueue_submit(order.id)
    flash(
        f"Order {order.id} placed: {order.side.value.replace('_', ' ')} {amount_text(order.quantity)} {order.symbol}.",
        "info",
    )
    return redirect(url_for("orders.index"))


@bp.post("/preview")
def preview() -> ResponseReturnValue:
    """Which risk limits apply, the projected exposure and whether the ticket would pass; no side
    effects. htmx gets the result alone, a plain form post the whole ticket with it."""
    form = _ticket_form()
    decision: RiskDecision | None = None
    error: ArbionError | None = None
    if form.validate_on_submit():
        try:
            decision = order_checks.preview_order(current_user, form.ticket())
        except ArbionError as exc:
            error = exc
    if request.headers.get("HX-Request") == "true":
        return render_template("orders/_preview.html", form=form, decision=decision, error=error)
    status = 200 if decision is not None else error.status if error is not None else 422
    return _ticket_page(form, decision=decision, error=error, status=status)


def _ticket_form() -> TicketForm:
    return TicketForm().offer(connections.list_connections(current_user))


def _ticket_page(
    form: TicketForm, *, status: int = 200, error: ArbionError | None = None, decision: RiskDecision | None = None
) -> ResponseReturnValue:
    """The ticket with the trader's values kept, a service error on its field, and a fresh key."""
    if error is not None and form.show(error):
        error = None
    form.renew_key()
    symbols = order_history.suggested_symbols(current_user)
    page = render_template("orders/new.html", form=form, error=error, decision=decision, symbols=symbols)
    return page, status


def _labels(mine: list[BrokerConnection]) -> dict[int, str]:
    return {connection.id: connection_label(connection) for connection in mine}


def _csv_row(order: Order, labels: dict[int, str]) -> list[str]:
    values = [
        order.created_at.isoformat(), labels.get(order.connection_id, ""), order.symbol, order.side.value,
        order.order_type.value, order.purpose.value, order.status.value, order.quantity, order.filled_quantity,
        order.remaining_quantity, order.average_fill_price, order.limit_price, order.stop_price, order.trail_offset,
        order.trail_percent, order.time_in_force.value, order.fees, order.status_detail, order.client_order_id,
        order.broker_order_id,
    ]  # fmt: skip
    return ["" if value is None else amount_text(value) if isinstance(value, Decimal) else value for value in values]
