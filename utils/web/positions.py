"""The trader's open positions: protection status, unrealized P&L, close and move-stop actions."""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms.validators import DataRequired, NumberRange

from utils.services import positions
from utils.tasks.trading import enqueue_submit
from utils.web.feedback import NOT_FOUND, attempt
from utils.web.forms import ActionForm, FiniteDecimalField

bp = Blueprint("positions", __name__, url_prefix="/positions")


class StopForm(FlaskForm):
    """A new stop-loss price."""

    stop_price = FiniteDecimalField(
        "New stop", places=None, validators=[DataRequired(), NumberRange(min=Decimal("0.0001"))]
    )


@bp.get("/")
def index() -> ResponseReturnValue:
    """Open positions with their trades, protection and unrealized P&L at the latest quote."""
    return _render("positions/index.html")


@bp.get("/table")
def table() -> ResponseReturnValue:
    """The positions table alone (htmx refreshes it every 5 s)."""
    return _render("positions/_table.html")


def _render(template: str) -> str:
    held = positions.open_positions(current_user)
    return render_template(
        template, positions=held, marks=positions.marks(held), action_form=ActionForm(), stop_form=StopForm()
    )


@bp.post("/<int:trade_id>/close")
def close(trade_id: int) -> ResponseReturnValue:
    """Close one trade at market (its broker stop is cancelled first)."""
    if ActionForm().validate_on_submit():
        exit_order = attempt(
            lambda: positions.close_position(current_user, trade_id), "Closing at market.", let_through=NOT_FOUND
        )
        if exit_order is not None:
            enqueue_submit(exit_order.id)
    return redirect(url_for("positions.index"))


@bp.post("/<int:trade_id>/stop")
def move_stop(trade_id: int) -> ResponseReturnValue:
    """Move a trade's stop-loss (the broker-held stop is replaced)."""
    form = StopForm()
    if form.validate_on_submit() and form.stop_price.data is not None:
        price = form.stop_price.data
        attempt(
            lambda: positions.move_stop(current_user, trade_id, price), f"Stop moved to {price}.", let_through=NOT_FOUND
        )
    else:
        flash("Enter a stop price above 0.", "error")
    return redirect(url_for("positions.index"))
