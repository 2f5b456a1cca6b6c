"""Login and logout pages (Flask-Login), rate limited per IP and per account."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, Length

from utils.exceptions import AuthenticationRequiredError
from utils.extensions import limiter
from utils.services import users
from utils.web import public
from utils.web.safety import safe_next

bp = Blueprint("auth", __name__, url_prefix="/auth")


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=128)])
    next = HiddenField()


def _per_ip_limit() -> str:
    return str(current_app.config["LOGIN_LIMIT_PER_IP"])


def _per_account_limit() -> str:
    return str(current_app.config["LOGIN_LIMIT_PER_ACCOUNT"])


def _account_key() -> str:
    return "login-account:" + request.form.get("email", "").strip().lower()[:254]


def _failed_login(response: object) -> bool:
    return getattr(response, "status_code", 0) == 401


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(_per_ip_limit, methods=["POST"], scope="login-ip")
@limiter.limit(_per_account_limit, methods=["POST"], key_func=_account_key, deduct_when=_failed_login)
def login() -> ResponseReturnValue:
    """Show the login form; on valid credentials start a fresh session."""
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm(next=request.args.get("next", ""))
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), 400 if form.errors else 200
    try:
        user = users.authenticate(form.email.data, form.password.data)
    except AuthenticationRequiredError as exc:
        flash(exc.message, "error")
        return render_template("auth/login.html", form=form), 401
    session.clear()
    login_user(user)
    return redirect(safe_next(form.next.data))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End this user's sessions on the server, then clear the cookie."""
    users.logout(current_user)
    logout_user()
    session.clear()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))
