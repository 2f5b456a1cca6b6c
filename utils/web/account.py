"""The signed-in user's own account: profile (name, email) and two-factor sign-in."""

from __future__ import annotations

import io

import segno
from flask import Blueprint, flash, redirect, render_template, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from utils.exceptions import ArbionError
from utils.services import two_factor, users
from utils.web.safety import no_store

bp = Blueprint("account", __name__, url_prefix="/account")
ENROLMENT = "two_factor_enrolment"


class ProfileForm(FlaskForm):
    """Display name and email; the current password only when the email changes."""

    display_name = StringField("Name", validators=[Optional(), Length(max=120)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    current_password = PasswordField("Current password (to change the email)", validators=[Length(max=128)])


class EnrolForm(FlaskForm):
    """The first code from the authenticator app, proving it holds the new secret."""

    code = StringField("Code from the app", validators=[DataRequired(), Length(max=40)])


class DisableForm(FlaskForm):
    """Password and a current code (or a recovery code): to turn two-factor off or replace recovery codes."""

    password = PasswordField("Password", validators=[DataRequired(), Length(max=128)])
    code = StringField("Code from the app or a recovery code", validators=[DataRequired(), Length(max=40)])


@bp.route("/profile", methods=["GET", "POST"])
def profile() -> ResponseReturnValue:
    """Show and change one's name and email (a new email needs the current password)."""
    form = ProfileForm(obj=current_user)
    if not form.validate_on_submit():
        return _profile_page(form), 400 if form.errors else 200
    try:
        users.update_profile(current_user, form.display_name.data or "", form.email.data, form.current_password.data)
    except ArbionError as exc:
        flash(exc.message, "error")
        return _profile_page(form), exc.status
    flash("Your profile was saved.", "info")
    return redirect(url_for("account.profile"))


@bp.get("/two-factor", endpoint="two_factor")
@no_store
def show_two_factor() -> ResponseReturnValue:
    """Two-factor status: the enrolment QR code when off, the way to turn it off when on."""
    if two_factor.is_enabled(current_user):
        return _two_factor_page(disable_form=DisableForm())
    return _two_factor_page(enrol_form=EnrolForm())


@bp.post("/two-factor/enable")
@no_store
def enable_two_factor() -> ResponseReturnValue:
    """Check the first code; on success show the recovery codes, once."""
    form = EnrolForm()
    if not form.validate_on_submit():
        return _two_factor_page(enrol_form=form, status=400)
    try:
        codes = two_factor.enable(current_user, session.get(ENROLMENT, ""), form.code.data)
    except ArbionError as exc:
        flash(exc.message, "error")
        return _two_factor_page(enrol_form=form, status=exc.status)
    session.pop(ENROLMENT, None)
    login_user(current_user._get_current_object())  # other sessions ended; this one goes on
    return render_template("account/recovery_codes.html", codes=codes)


@bp.post("/two-factor/disable")
def disable_two_factor() -> ResponseReturnValue:
    """Turn two-factor off (password and a code required)."""
    form = DisableForm()
    if not form.validate_on_submit():
        return _two_factor_page(disable_form=form, status=400)
    try:
        two_factor.disable(current_user, form.password.data, form.code.data)
    except ArbionError as exc:
        flash(exc.message, "error")
        return _two_factor_page(disable_form=form, status=exc.status)
    flash("Two-factor sign-in is off.", "info")
    return redirect(url_for("account.two_factor"))


@bp.post("/two-factor/recovery-codes")
@no_store
def replace_recovery_codes() -> ResponseReturnValue:
    """Replace the recovery codes (password and a code required); the new ones are shown once."""
    form = DisableForm()
    if not form.validate_on_submit():
        return _two_factor_page(disable_form=form, status=400)
    try:
        codes = two_factor.replace_recovery_codes(current_user, form.password.data, form.code.data)
    except ArbionError as exc:
        flash(exc.message, "error")
        return _two_factor_page(disable_form=form, status=exc.status)
    return render_template("account/recovery_codes.html", codes=codes)


def _profile_page(form: ProfileForm) -> str:
    return render_template("account/profile.html", form=form, two_factor_on=two_factor.is_enabled(current_user))


def _two_factor_page(
    enrol_form: EnrolForm | None = None, disable_form: DisableForm | None = None, status: int = 200
) -> tuple[str, int]:
    """The two-factor page; while enrolling, the pending secret (sealed in the session) and its QR."""
    enrolment = None
    if enrol_form is not None:
        enrolment = two_factor.start_enrolment(current_user, session.get(ENROLMENT))
        session[ENROLMENT] = enrolment.sealed
    page = render_template(
        "account/two_factor.html",
        enrolment=enrolment,
        qr=_qr_svg(enrolment.uri) if enrolment else None,
        enrol_form=enrol_form,
        disable_form=disable_form,
        codes_left=two_factor.recovery_codes_left(current_user),
    )
    return page, status


def _qr_svg(uri: str) -> Markup:
    """The QR code as inline SVG markup (no script, no style attribute: fine under our CSP)."""
    buffer = io.BytesIO()
    code = segno.make(uri, error="m")
    code.save(buffer, kind="svg", xmldecl=False, svgns=True, nl=False, scale=5, light="#fff", svgid="totp-qr")
    return Markup(buffer.getvalue().decode())  # nosec B704 # noqa: S704 - segno's own SVG, the URI only in its modules
