"""Login (password, then a two-factor code when the user has one) and logout, rate limited per IP
here and by failed checks per account in services.credential_checks."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from models import User
from utils.exceptions import ArbionError
from utils.extensions import limiter
from utils.services import two_factor, users
from utils.web import public
from utils.web.errors import retry_after
from utils.web.safety import safe_next
from utils.web.session_limits import start_session_clock

bp = Blueprint("auth", __name__, url_prefix="/auth")
PENDING_SIGN_IN = "two_factor_pending"


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=128)])
    next = HiddenField()


class CodeForm(FlaskForm):
    """The second step: a 6-digit code or a recovery code."""

    code = StringField("Code", validators=[DataRequired(), Length(max=40)])


def _per_ip_limit() -> str:
    return str(current_app.config["LOGIN_LIMIT_PER_IP"])


def _sign_in(user: User) -> None:
    """Log the user in with a fresh clock for the idle and absolute session timeouts."""
    login_user(user)
    start_session_clock()


def _landing(user: User, next_url: str | None) -> str:
    """Where a fresh session goes: two-factor enrolment first when the admin policy requires it."""
    if two_factor.enrolment_required(user):
        flash("Administrators must turn on two-factor sign-in before using the admin area.", "error")
        return url_for("account.two_factor")
    return safe_next(next_url)


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(_per_ip_limit, methods=["POST"], scope="login-ip")
def login() -> ResponseReturnValue:
    """Show the login form; on valid credentials start a fresh session."""
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm(next=request.args.get("next", ""))
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), 400 if form.errors else 200
    try:
        user = users.authenticate(form.email.data, form.password.data)
    except ArbionError as exc:
        flash(exc.message, "error")
        form.email.data = form.email.data if users.is_email(form.email.data) else ""  # maybe a password
        return render_template("auth/login.html", form=form), exc.status, retry_after(exc)
    session.clear()
    if two_factor.is_enabled(user):
        session[PENDING_SIGN_IN] = {**two_factor.pending_sign_in(user), "next": safe_next(form.next.data)}
        return redirect(url_for("auth.second_step"))
    _sign_in(user)
    return redirect(_landing(user, form.next.data))


@bp.route("/two-factor", methods=["GET", "POST"])
@public
@limiter.limit(_per_ip_limit, methods=["POST"], scope="two-factor-ip")
def second_step() -> ResponseReturnValue:
    """After a correct password: the code from the authenticator app (or a recovery code)."""
    pending = session.get(PENDING_SIGN_IN)
    if not pending:
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if not form.validate_on_submit():
        return render_template("auth/two_factor.html", form=form), 400 if form.errors else 200
    try:
        user = two_factor.finish_sign_in(pending, form.code.data)
    except ArbionError as exc:
        flash(exc.message, "error")
        return render_template("auth/two_factor.html", form=form), exc.status, retry_after(exc)
    session.clear()
    _sign_in(user)
    return redirect(safe_next(str(pending.get("next", ""))))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End this user's sessions on the server, then clear the cookie."""
    users.logout(current_user)
    logout_user()
    session.clear()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))
