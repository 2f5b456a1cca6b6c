"""Admin pages for user accounts: list, create, role, activation, password reset, delete, flatten."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from utils.enums import Role
from utils.exceptions import ConflictError, InvalidInputError
from utils.services import positions, trading_state, users
from utils.tasks.trading import enqueue_submit
from utils.web.admin.trading import TradingStateForm, limit_rows
from utils.web.feedback import attempt
from utils.web.forms import ActionForm
from utils.web.safety import no_store

bp = Blueprint("users", __name__, url_prefix="/users")
ROLE_CHOICES = [SelectChoice(role.value, role.value.title()) for role in Role]


class NewUserForm(FlaskForm):
    """Email, name, role and an initial password."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    display_name = StringField("Name", validators=[Optional(), Length(max=120)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.TRADER.value)
    password = PasswordField("Initial password", validators=[DataRequired(), Length(max=128)])


class RoleForm(FlaskForm):
    """A new role for a user."""

    role = SelectField("Role", choices=ROLE_CHOICES)


class FlattenForm(FlaskForm):
    """Why the admin closes everything the user holds (kept in the audit log)."""

    # Not "reason": the trading-state form on the same page has a field with that id.
    flatten_reason = StringField("Reason", validators=[DataRequired(), Length(max=300)])


@bp.get("/")
def index() -> ResponseReturnValue:
    """Users, filtered by ?q= on email or name."""
    query = request.args.get("q", "")[:100]
    return render_template("admin/users.html", users=users.search_users(query), query=query)


@bp.route("/new", methods=["GET", "POST"])
def create() -> ResponseReturnValue:
    """Create an account."""
    form = NewUserForm()
    if not form.validate_on_submit():
        return render_template("admin/user_new.html", form=form), 400 if form.errors else 200
    try:
        user = users.create_user(
            form.email.data,
            form.password.data,
            Role(form.role.data),
            actor=current_user,
            display_name=form.display_name.data or "",
        )
    except (InvalidInputError, ConflictError) as exc:
        flash(exc.message, "error")
        return render_template("admin/user_new.html", form=form), exc.status
    flash(f"Created {user.email}.", "info")
    return redirect(url_for("admin.users.detail", user_id=user.id))


@bp.get("/<int:user_id>")
def detail(user_id: int) -> ResponseReturnValue:
    """One user with the actions an admin can take."""
    user = users.get_user(user_id)
    status = trading_state.user_trading_state(user)
    return render_template(
        "admin/user_detail.html",
        user=user,
        role_form=RoleForm(role=user.role.value),
        confirm_form=ActionForm(),
        flatten_form=FlattenForm(),
        trading_status=status,
        trading_form=TradingStateForm(state=status.state.value, reason=status.reason),
        limits=limit_rows(user),
        limits_form=ActionForm(),
    )


@bp.post("/<int:user_id>/role")
def change_role(user_id: int) -> ResponseReturnValue:
    """Give the user another role."""
    form = RoleForm()
    if form.validate_on_submit():
        attempt(lambda: users.change_role(current_user, user_id, Role(form.role.data)), "Role changed.")
    return redirect(url_for("admin.users.detail", user_id=user_id))


@bp.post("/<int:user_id>/activate")
def activate(user_id: int) -> ResponseReturnValue:
    """Let the user log in again."""
    attempt(lambda: users.set_active(current_user, user_id, True), "User activated.")
    return redirect(url_for("admin.users.detail", user_id=user_id))


@bp.post("/<int:user_id>/deactivate")
def deactivate(user_id: int) -> ResponseReturnValue:
    """Stop the user from logging in and end their sessions."""
    attempt(lambda: users.set_active(current_user, user_id, False), "User deactivated.")
    return redirect(url_for("admin.users.detail", user_id=user_id))


@bp.post("/<int:user_id>/reset-password")
@no_store
def reset_password(user_id: int) -> ResponseReturnValue:
    """Set a random password and show it once, on this response only."""
    temporary = users.reset_password(current_user, user_id)
    return render_template("admin/password_reset.html", user=users.get_user(user_id), password=temporary)


@bp.post("/<int:user_id>/delete")
def delete(user_id: int) -> ResponseReturnValue:
    """Delete the account (refused, with the reason, for oneself, the last superadmin, or open trading)."""
    if not ActionForm().validate_on_submit():
        return redirect(url_for("admin.users.detail", user_id=user_id))
    email = attempt(lambda: users.delete_user(current_user, user_id))
    if email is None:
        return redirect(url_for("admin.users.detail", user_id=user_id))
    flash(f"Deleted {email}.", "info")
    return redirect(url_for("admin.users.index"))


@bp.post("/<int:user_id>/flatten")
def flatten(user_id: int) -> ResponseReturnValue:
    """Cancel the user's working entries and close every position at market, for a stated reason."""
    form = FlattenForm()
    if not form.validate_on_submit():
        flash("Give a reason for flattening this user.", "error")
        return redirect(url_for("admin.users.detail", user_id=user_id))
    result = attempt(lambda: positions.flatten_user(current_user, user_id, form.flatten_reason.data))
    if result is not None:
        for exit_id in result.exits:
            enqueue_submit(exit_id)
        flash(f"Flattening: {len(result.exits)} exit order(s) sent.", "info")
        for problem in result.problems:
            flash(f"Not closed yet: {problem}", "error")
    return redirect(url_for("admin.users.detail", user_id=user_id))
