"""The trader's home and account pages."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from utils.exceptions import ArbionError
from utils.services import portfolio, users

bp = Blueprint("dashboard", __name__)


class PasswordChangeForm(FlaskForm):
    """Current password, and the new one twice."""

    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=128)])
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=128)])
    confirm = PasswordField(
        "Repeat new password", validators=[DataRequired(), EqualTo("new_password", "The passwords differ.")]
    )


@bp.get("/")
def index() -> ResponseReturnValue:
    """The signed-in user's home: money, P&L, trading state, connection health and charts."""
    return render_template("dashboard/index.html", overview=portfolio.overview(current_user))


@bp.get("/overview")
def overview() -> ResponseReturnValue:
    """The live part of the home page (htmx refreshes it every few seconds from cached balances)."""
    return render_template("dashboard/_overview.html", overview=portfolio.overview(current_user))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password() -> ResponseReturnValue:
    """Change one's own password; other sessions are ended, this one continues."""
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        return render_template("dashboard/password.html", form=form), 400 if form.errors else 200
    try:
        users.change_password(current_user, form.current_password.data, form.new_password.data)
    except ArbionError as exc:
        flash(exc.message, "error")
        return render_template("dashboard/password.html", form=form), exc.status
    login_user(current_user._get_current_object())
    flash("Your password has been changed. Other sessions were signed out.", "info")
    return redirect(url_for("dashboard.index"))
