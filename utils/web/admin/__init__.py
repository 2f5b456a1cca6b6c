"""The superadmin area: one parent blueprint whose guard covers every page under /admin."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from utils.services import two_factor
from utils.web.admin import brokers, system, trading, users

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _superadmins_only() -> ResponseReturnValue | None:
    """Every admin page, present and future: superadmins only, others get 403; with
    ADMIN_REQUIRE_TOTP, a superadmin without two-factor sign-in is sent to enrol first."""
    if not current_user.is_authenticated or not current_user.is_superadmin:
        abort(403)
    if two_factor.enrolment_required(current_user):
        flash("Turn on two-factor sign-in before using the admin area.", "error")
        return redirect(url_for("account.two_factor"))
    return None


@bp.get("/")
def index() -> ResponseReturnValue:
    """The admin area opens on the user list."""
    return redirect(url_for("admin.users.index"))


bp.register_blueprint(users.bp)
bp.register_blueprint(system.bp)
bp.register_blueprint(brokers.bp)
bp.register_blueprint(trading.bp)
