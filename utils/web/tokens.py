"""The user's personal API tokens: list, create (password and two-factor code re-entered; the token
is shown once), revoke."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, SelectMultipleField, StringField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from utils.services import api_tokens, two_factor
from utils.web.feedback import NOT_FOUND, attempt, flash_errors
from utils.web.forms import ActionForm
from utils.web.safety import no_store

bp = Blueprint("tokens", __name__, url_prefix="/account/tokens")
SCOPE_LABELS = {
    "read": "read: see orders, positions, trades and limits",
    "trade": "trade: place, change and cancel orders, close positions",
    "admin": "admin: administration resources",
}


class TokenForm(FlaskForm):
    """A name, the scopes and when the token expires."""

    name = StringField("Name", validators=[DataRequired(), Length(max=api_tokens.MAX_NAME_LENGTH)])
    scopes = SelectMultipleField(
        "Scopes",
        default=["read"],
        widget=widgets.ListWidget(prefix_label=False),
        option_widget=widgets.CheckboxInput(),
    )
    expires_in_days = SelectField("Expires after", coerce=int, default=api_tokens.default_lifetime)
    password = PasswordField("Your password", validators=[DataRequired(), Length(max=128)])
    code = StringField("Code from your authenticator app (or a recovery code)", validators=[Length(max=40)])


@bp.get("/")
def index() -> ResponseReturnValue:
    """The user's tokens and the form to create one."""
    return _page(_token_form())


@bp.post("/")
@no_store
def create() -> ResponseReturnValue:
    """Create a token once the password (and code) are re-entered, and show it once."""
    form = _token_form()
    if not form.validate_on_submit():
        flash_errors(form)
        return _page(form), 400
    issued = attempt(
        lambda: api_tokens.create_confirmed_token(
            current_user,
            form.name.data or "",
            form.scopes.data or [],
            form.expires_in_days.data,
            form.password.data or "",
            form.code.data or "",
        )
    )
    if issued is None:
        return _page(form), 400
    return _page(_token_form(formdata=None), issued=issued)


@bp.post("/<int:token_id>/revoke")
def revoke(token_id: int) -> ResponseReturnValue:
    """Revoke one of the user's tokens at once."""
    if ActionForm().validate_on_submit():
        attempt(lambda: api_tokens.revoke_token(current_user, token_id), "Token revoked.", let_through=NOT_FOUND)
    return redirect(url_for("tokens.index"))


def _token_form(**kwargs: object) -> TokenForm:
    form = TokenForm(**kwargs)
    offered = [
        scope for scope in api_tokens.SCOPES if scope != "admin" or api_tokens.may_hold_admin_scope(current_user)
    ]
    form.scopes.choices = [SelectChoice(scope, SCOPE_LABELS[scope]) for scope in offered]
    form.expires_in_days.choices = [SelectChoice(days, f"{days} days") for days in api_tokens.lifetime_choices()]
    return form


def _page(form: TokenForm, issued: api_tokens.IssuedToken | None = None) -> str:
    return render_template(
        "account/tokens.html",
        tokens=api_tokens.list_tokens(current_user),
        scopes_of=api_tokens.scopes_of,
        status_of=api_tokens.status_of,
        form=form,
        action_form=ActionForm(),
        issued=issued,
        two_factor_on=two_factor.is_enabled(current_user),
    )
