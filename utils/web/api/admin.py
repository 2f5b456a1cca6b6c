"""/api/v1/admin: risk limits of any user and the audit trail (admin scope, superadmins only)."""

from __future__ import annotations

from typing import Any

from models import AuditLog
from utils.risk.inputs import RiskLimits
from utils.services import audit, risk, risk_limits, users
from utils.web.api.auth import caller
from utils.web.api.base import ApiBlueprint
from utils.web.api.schemas import AuditArgsSchema, AuditEntrySchema, RiskLimitsSchema, RiskLimitsUpdateSchema

blp = ApiBlueprint(
    "api_admin",
    __name__,
    url_prefix="/api/v1/admin",
    tag="Administration",
    description="Users' risk limits and the audit trail (tokens with the admin scope only).",
    admin=True,
)


@blp.route("/users/<int:user_id>/risk-limits", methods=["PUT"])
@blp.arguments(RiskLimitsUpdateSchema)
@blp.response(200, RiskLimitsSchema)
def set_risk_limits(changes: dict[str, Any], user_id: int) -> RiskLimits:
    """Change some of a user's risk limits; answers the effective limits.

    null puts a limit back to the platform default; one bad field changes nothing. Audited.
    """
    user = users.get_user(user_id)
    risk_limits.set_limits(caller(), user, changes)
    return risk.limits_for(user)


@blp.route("/audit", methods=["GET"])
@blp.arguments(AuditArgsSchema, location="query")
@blp.response(200, AuditEntrySchema(many=True))
def audit_entries(args: dict[str, Any]) -> list[AuditLog]:
    """The newest audit entries first, narrowed by actor, action, subject and UTC dates."""
    limit = args.pop("limit")
    return audit.recent(limit, audit.AuditFilter(**args))
