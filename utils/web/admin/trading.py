"""Admin: the platform-wide kill switch and each user's trading state."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from models import User
from utils.enums import TradingState
from utils.services import kill_switch, risk, risk_limits, trading_state, users
from utils.tasks import trading as trading_tasks
from utils.web.feedback import attempt
from utils.web.forms import ActionForm

bp = Blueprint("trading", __name__, url_prefix="/trading")
STATES = [
    SelectChoice(TradingState.ACTIVE.value, "Active: trading allowed"),
    SelectChoice(TradingState.REDUCING.value, "Reducing: exits only"),
    SelectChoice(TradingState.HALTED.value, "Halted: no new orders (protective exits still run)"),
]


class TradingStateForm(FlaskForm):
    """A state, why, and a confirmation box (it affects real orders)."""

    state = SelectField("Trading state", choices=STATES)
    reason = StringField("Reason (required to restrict)", validators=[Optional(), Length(max=300)])
    cancel_working = BooleanField("Also cancel working entry orders at the broker (exits are never cancelled)")
    confirm = BooleanField("I understand this changes what can be traded", validators=[DataRequired()])


@bp.get("/")
def index() -> ResponseReturnValue:
    """The global state and the form to change it."""
    status = trading_state.global_trading_state()
    form = TradingStateForm(state=status.state.value, reason=status.reason)
    return render_template("admin/trading.html", status=status, form=form)


@bp.post("/")
def set_global() -> ResponseReturnValue:
    """Flip the kill switch (confirmation and, to restrict, a reason required; audited)."""
    form = TradingStateForm()
    if form.validate_on_submit():
        state = TradingState(form.state.data)
        restriction = attempt(
            lambda: kill_switch.set_platform_state(current_user, state, form.reason.data or "", source="admin")
        )
        if restriction is not None:
            _after_restriction(restriction, form, None, "platform-wide")
    else:
        flash("Tick the confirmation box and give a reason to change the platform's trading state.", "error")
    return redirect(url_for("admin.trading.index"))


@bp.post("/users/<int:user_id>")
def set_user(user_id: int) -> ResponseReturnValue:
    """Set one user's trading state (confirmation and, to restrict, a reason required; audited)."""
    form = TradingStateForm()
    if form.validate_on_submit():
        user = attempt(lambda: users.get_user(user_id))
        if user is not None:
            state = TradingState(form.state.data)
            restriction = attempt(lambda: kill_switch.set_user_state(current_user, user, state, form.reason.data or ""))
            if restriction is not None:
                _after_restriction(restriction, form, user.id, f"for {user.email}")
    else:
        flash("Tick the confirmation box and give a reason to change this user's trading state.", "error")
    return redirect(url_for("admin.users.detail", user_id=user_id))


def _after_restriction(
    restriction: kill_switch.Restriction, form: TradingStateForm, user_id: int | None, scope: str
) -> None:
    """Say what the change did; hand the broker cancels of working entries to a worker when asked."""
    status = restriction.status
    message = f"Trading is now {status.state.value.upper()} {scope}."
    if restriction.queued_cancelled:
        message += f" {restriction.queued_cancelled} queued entry order(s) cancelled."
    if form.cancel_working.data and status.state != TradingState.ACTIVE:
        trading_tasks.cancel_working_entries.delay(user_id, status.reason)
        message += " Working entry orders are being cancelled at the broker."
    flash(message, "info")


@bp.post("/users/<int:user_id>/limits")
def set_limits(user_id: int) -> ResponseReturnValue:
    """Save a user's risk limits (empty = the platform default); all or nothing, audited."""
    form = ActionForm()
    if form.validate_on_submit():
        user = attempt(lambda: users.get_user(user_id))
        if user is not None:
            changes = {name: request.form.get(name, "") for name in risk_limits.EDITABLE}
            attempt(lambda: risk_limits.set_limits(current_user, user, changes), f"Risk limits of {user.email} saved.")
    return redirect(url_for("admin.users.detail", user_id=user_id))


def limit_rows(user: User) -> list[tuple[str, str, str]]:
    """(field, stored value or "", effective value) for the admin's limits form."""
    row = trading_state.settings_row(user)
    effective = risk.limits_for(user)
    rows = []
    for name in risk_limits.EDITABLE:
        stored = getattr(row, name) if row is not None else None
        shown = "" if stored in (None, "") else str(stored)
        value = getattr(effective, name)
        rows.append((name, shown, ", ".join(sorted(value)) if isinstance(value, frozenset) else str(value)))
    return rows
