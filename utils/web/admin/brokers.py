"""Admin page for the platform's broker app registrations (the Schwab app key, secret, callback)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from utils.services import broker_apps
from utils.web.feedback import attempt, flash_errors

bp = Blueprint("brokers", __name__, url_prefix="/brokers")


class SchwabAppForm(FlaskForm):
    """The Schwab developer app: its key, its secret (blank keeps the stored one) and callback URL."""

    client_id = StringField("App key", validators=[DataRequired(), Length(max=200)])
    client_secret = PasswordField("App secret", validators=[Optional(), Length(max=500)])
    redirect_uri = StringField("Callback URL", validators=[DataRequired(), Length(max=500)])


@bp.get("/")
def index() -> ResponseReturnValue:
    """The Schwab app in effect and the form to set it."""
    summary = broker_apps.schwab_app_summary()
    form = SchwabAppForm(client_id=summary.client_id, redirect_uri=summary.redirect_uri)
    return render_template("admin/brokers.html", summary=summary, form=form, callback_path=broker_apps.CALLBACK_PATH)


@bp.post("/schwab")
def save_schwab() -> ResponseReturnValue:
    """Save the Schwab app registration (the secret encrypted)."""
    form = SchwabAppForm()
    if form.validate_on_submit():
        attempt(
            lambda: broker_apps.save_schwab_app(
                current_user, form.client_id.data, form.client_secret.data or "", form.redirect_uri.data
            ),
            "Schwab app saved.",
        )
    else:
        flash_errors(form)
    return redirect(url_for("admin.brokers.index"))
