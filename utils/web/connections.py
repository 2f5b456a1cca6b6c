"""The trader's broker connections page: paper accounts, Coinbase keys and the Schwab login."""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from utils.services import broker_apps, connections, schwab_logins
from utils.web.feedback import NOT_FOUND, attempt, flash_errors
from utils.web.forms import ActionForm, FiniteDecimalField

bp = Blueprint("connections", __name__, url_prefix="/connections")
SCHWAB_LOGIN_KEY = "schwab_login"
SCHWAB_LOGIN_SECONDS = 600  # a login not finished within 10 minutes must start again


class PaperAccountForm(FlaskForm):
    """A label and the starting cash of a new paper account."""

    label = StringField("Name", validators=[Optional(), Length(max=80)])
    starting_cash = FiniteDecimalField("Starting cash (USD)", places=2, validators=[Optional(), NumberRange(min=1)])


class CoinbaseKeyForm(FlaskForm):
    """A CDP API key: its name and its EC private key (PEM). Never shown again once saved."""

    label = StringField("Name", validators=[Optional(), Length(max=80)])
    key_name = StringField("API key name", validators=[DataRequired(), Length(max=300)])
    private_key = TextAreaField("Private key (PEM)", validators=[DataRequired(), Length(max=4000)])


class ResetForm(FlaskForm):
    """Resetting deletes orders and positions: the user must tick the box."""

    confirm = BooleanField(
        "I understand this deletes this paper account's orders and positions", validators=[DataRequired()]
    )


@bp.get("/")
def index() -> ResponseReturnValue:
    """The user's connections with their status and actions."""
    return render_template(
        "connections/index.html",
        connections=connections.list_connections(current_user),
        days_left=schwab_logins.days_left,
        schwab_ready=broker_apps.schwab_app_summary().secret_set,
        paper_form=PaperAccountForm(),
        coinbase_form=CoinbaseKeyForm(),
        reset_form=ResetForm(),
        action_form=ActionForm(),
    )


@bp.post("/paper")
def create_paper() -> ResponseReturnValue:
    """Open a paper account."""
    form = PaperAccountForm()
    if form.validate_on_submit():
        attempt(
            lambda: connections.create_paper_connection(current_user, form.label.data or "", form.starting_cash.data),
            "Paper account opened.",
        )
    else:
        flash_errors(form)
    return redirect(url_for("connections.index"))


@bp.post("/coinbase")
def add_coinbase() -> ResponseReturnValue:
    """Save a Coinbase CDP key (encrypted) and check it once."""
    form = CoinbaseKeyForm()
    if not form.validate_on_submit():
        flash_errors(form)
        return redirect(url_for("connections.index"))
    connection = attempt(
        lambda: connections.add_coinbase_connection(
            current_user, form.key_name.data, form.private_key.data, form.label.data or ""
        )
    )
    if connection is not None:
        flash(f"Coinbase key saved: {connection.status.value.replace('_', ' ')}. {connection.status_detail}", "info")
    return redirect(url_for("connections.index"))


@bp.post("/<int:connection_id>/test")
def check(connection_id: int) -> ResponseReturnValue:
    """Call the broker once and show the result."""
    if ActionForm().validate_on_submit():
        connection = attempt(lambda: connections.check_connection(current_user, connection_id), let_through=NOT_FOUND)
        if connection is not None:
            flash(
                f"{connection.label}: {connection.status.value.replace('_', ' ')}. {connection.status_detail}", "info"
            )
    return redirect(url_for("connections.index"))


@bp.post("/<int:connection_id>/reset")
def reset_paper(connection_id: int) -> ResponseReturnValue:
    """Reset a paper account to its starting cash, after confirmation."""
    form = ResetForm()
    if not form.validate_on_submit():
        flash("Tick the confirmation box to reset the paper account.", "error")
    else:
        attempt(
            lambda: connections.reset_paper_account(current_user, connection_id),
            "Paper account reset.",
            let_through=NOT_FOUND,
        )
    return redirect(url_for("connections.index"))


@bp.get("/schwab/connect")
def schwab_connect_start() -> ResponseReturnValue:
    """Send the user to Schwab's login with a fresh state and PKCE challenge."""
    login = attempt(schwab_logins.begin_login)
    if login is None:
        return redirect(url_for("connections.index"))
    session[SCHWAB_LOGIN_KEY] = {"state": login.state, "verifier": login.verifier, "started": time.time()}
    return redirect(login.url)


@bp.get("/schwab/callback")
def schwab_callback() -> ResponseReturnValue:
    """Schwab sends the user back here with a code (or an error) and our state."""
    pending = session.pop(SCHWAB_LOGIN_KEY, None)
    problem = _callback_problem(pending)
    if problem:
        flash(problem, "error")
        return redirect(url_for("connections.index"))
    code = request.args["code"]
    linked = attempt(lambda: schwab_logins.complete_login(current_user, code, pending["verifier"]))
    if linked is not None:
        numbers = ", ".join(connection.label for connection in linked)
        flash(f"Schwab connected: {numbers}.", "info")
    return redirect(url_for("connections.index"))


def _callback_problem(pending: dict[str, object] | None) -> str:
    """Why this callback cannot be used, in words; empty when it can."""
    if request.args.get("error"):
        return "The Schwab login was cancelled or refused; nothing was connected."
    state, code = request.args.get("state", ""), request.args.get("code", "")
    if not isinstance(pending, dict) or not hmac.compare_digest(str(pending.get("state", "")), state) or not code:
        return "This Schwab login answer does not match a login started here. Start the connection again."
    if time.time() - float(pending.get("started", 0)) > SCHWAB_LOGIN_SECONDS:  # type: ignore[arg-type]
        return "The Schwab login took longer than 10 minutes. Start the connection again."
    return ""
