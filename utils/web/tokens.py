"""The user's personal API tokens: list, create (the token is shown once), revoke."""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, SelectMultipleField, StringField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from utils.services import api_tokens
from utils.web.feedback import NOT_FOUND, attempt
from utils.web.forms import ActionForm

bp = Blueprint("tokens", __name__, url_prefix="/account/tokens")
SCOPE_LABELS = {
    "read": "read: see orders, positions, trades and limits",
    "trade": "trade: place, change and cancel orders, close positions",
    "admin": "admin: administration resources",
}
LIFETIMES = [
    SelectChoice("", "Never"),
    SelectChoice("30", "30 days"),
    SelectChoice("90", "90 days"),
    SelectChoice("365", "1 year"),
]


class TokenForm(FlaskForm):
    """A name, the scopes and when the token expires."""

    name = StringField("Name", validators=[DataRequired(), Length(max=api_tokens.MAX_NAME_LENGTH)])
    scopes = SelectMultipleField(
        "Scopes",
        default=["read"],
        widget=widgets.ListWidget(prefix_label=False),
        option_widget=widgets.CheckboxInput(),
    )
    expires_in_days = SelectField("Expires", choices=LIFETIMES, default="")


@bp.get("/")
def index() -> ResponseReturnValue:
    """The user's tokens and the form to create one."""
    return _page(_token_form())


@bp.post("/")
def create() -> ResponseReturnValue:
    """Create a token and show it once, on a page no cache may keep."""
    form = _token_form()
    if not form.validate_on_submit():
        flash("Give the token a name and pick at least one scope.", "error")
        return _page(form), 400
    days = int(form.expires_in_days.data) if form.expires_in_days.data else None
    issued = attempt(lambda: api_tokens.create_token(current_user, form.name.data or "", form.scopes.data or [], days))
    if issued is None:
        return _page(form), 400
    response = make_response(_page(_token_form(formdata=None), new_token=issued.plaintext))
    response.headers["Cache-Control"] = "no-store"
    return response


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
    return form


def _page(form: TokenForm, new_token: str | None = None) -> str:
    return render_template(
        "account/tokens.html",
        tokens=api_tokens.list_tokens(current_user),
        scopes_of=api_tokens.scopes_of,
        form=form,
        action_form=ActionForm(),
        new_token=new_token,
    )
