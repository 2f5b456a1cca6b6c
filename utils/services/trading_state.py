"""Trading states: the user's own (RiskSettings) and the platform-wide kill switch (SystemSetting).

ACTIVE trades normally; REDUCING accepts exits only; HALTED accepts no new orders while protective
exits still run (the risk engine enforces this, utils/risk/rules.py). Every change is audited and
committed here; utils/services/risk.py re-exports these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult

from models import RiskSettings, SystemSetting, User
from utils.enums import TradingState
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.services import audit

log = get_logger(__name__)
GLOBAL_STATE_KEY = "trading_state"
MAX_REASON_LENGTH = 500


@dataclass(frozen=True)
class TradingStatus:
    """A trading state with why it was set and by whom."""

    state: TradingState
    reason: str = ""
    by: str = ""


def settings_row(user: User) -> RiskSettings | None:
    """The user's RiskSettings row, read fresh (another process may have just halted them)."""
    statement = db.select(RiskSettings).where(RiskSettings.user_id == user.id)
    return db.session.scalar(statement.execution_options(populate_existing=True))


def user_trading_state(user: User) -> TradingStatus:
    """The user's own trading state (ACTIVE when no settings row exists)."""
    return status_of(settings_row(user))


def status_of(row: RiskSettings | None) -> TradingStatus:
    """The trading state stored in a RiskSettings row (ACTIVE for no row)."""
    if row is None:
        return TradingStatus(TradingState.ACTIVE)
    return TradingStatus(TradingState(row.trading_state), row.trading_state_reason)


def global_trading_state() -> TradingStatus:
    """The platform-wide state (the kill switch). An unreadable setting counts as HALTED."""
    return global_status_of(*db.session.execute(db.select(*global_state_columns())).one())


def global_state_columns() -> tuple[Any, Any]:
    """Whether the kill switch was ever set and its stored value, as two scalar subqueries (read fresh)."""
    setting = db.select(SystemSetting.value).where(SystemSetting.key == GLOBAL_STATE_KEY)
    return setting.exists(), setting.scalar_subquery()


def global_status_of(found: bool, value: Any) -> TradingStatus:
    """The platform-wide state from the kill switch's stored value (never set: ACTIVE)."""
    if not found:
        return TradingStatus(TradingState.ACTIVE)
    try:
        stored = dict(value)
        return TradingStatus(TradingState(stored["state"]), str(stored.get("reason", "")), str(stored.get("by", "")))
    except (KeyError, TypeError, ValueError):
        log.error("risk.global_state_unreadable", value=repr(value)[:200])
        return TradingStatus(TradingState.HALTED, "the global trading state setting is unreadable", "system")


def set_user_trading_state(actor: User | None, user: User, state: TradingState, reason: str = "") -> TradingStatus:
    """Set a user's trading state (audited, committed). HALTED and REDUCING need a reason.

    Callers guard who may do this (the admin area); ``actor`` None means the platform itself.
    """
    status = TradingStatus(TradingState(state), checked_reason(state, reason), _by(actor, "system"))
    previous = user_trading_state(user)
    _upsert_user_state(user.id, status)
    _audit("risk.user_trading_state", actor, user, previous, status)
    db.session.commit()
    return status


def set_global_trading_state(
    actor: User | None, state: TradingState, reason: str = "", *, source: str = "system"
) -> TradingStatus:
    """Flip the platform-wide kill switch (audited, committed). HALTED and REDUCING need a reason.

    ``source`` names a caller without a user (``"cli"``); callers guard who may do this.
    """
    status = TradingStatus(TradingState(state), checked_reason(state, reason), _by(actor, source))
    previous = global_trading_state()
    value = {"state": status.state.value, "reason": status.reason, "by": status.by}
    row = {"key": GLOBAL_STATE_KEY, "value": value, "updated_by_id": actor.id if actor is not None else None}
    upsert(SystemSetting, row, [SystemSetting.key])
    _audit("risk.global_trading_state", actor, None, previous, status)
    db.session.commit()
    log.warning("risk.global_trading_state", state=status.state.value, reason=status.reason, by=status.by)
    return status


def enter_reducing(user: User, reason: str) -> bool:
    """ACTIVE -> REDUCING atomically (audited, NOT committed); False when the user was not ACTIVE.

    A user already HALTED or REDUCING is left alone: this never loosens a restriction.
    """
    status = TradingStatus(TradingState.REDUCING, checked_reason(TradingState.REDUCING, reason), "risk engine")
    if not _upsert_user_state(user.id, status, only_from=TradingState.ACTIVE):
        return False
    _audit("risk.user_trading_state", None, user, TradingStatus(TradingState.ACTIVE), status)
    log.warning("risk.entered_reducing", user_id=user.id, reason=status.reason)
    return True


def checked_reason(state: TradingState, reason: str) -> str:
    """The stripped reason; InvalidInputError when a restriction has none or it is too long."""
    reason = (reason or "").strip()
    if TradingState(state) != TradingState.ACTIVE and not reason:
        raise InvalidInputError(
            "Say why trading is being restricted: a reason is required.", details={"field": "reason"}
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInputError(f"Keep the reason under {MAX_REASON_LENGTH} characters.", details={"field": "reason"})
    return reason


def _by(actor: User | None, source: str) -> str:
    return actor.email if actor is not None else source


def _upsert_user_state(user_id: int, status: TradingStatus, *, only_from: TradingState | None = None) -> bool:
    """Insert or update the user's state; with ``only_from``, change only a row in that state."""
    values = {"user_id": user_id, "trading_state": status.state, "trading_state_reason": status.reason}
    where = RiskSettings.trading_state == only_from if only_from is not None else None
    return upsert(RiskSettings, values, [RiskSettings.user_id], where=where)


def upsert(model: Any, values: dict[str, Any], keys: list[Any], where: Any = None) -> bool:
    """INSERT … ON CONFLICT DO UPDATE (atomic on both backends); True when a row was written."""
    db.session.flush()  # pending ORM changes go first; the commit that follows expires stale objects
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    changes = {**values, "updated_at": utcnow()}
    statement = dialect.insert(model).values(**changes)
    statement = statement.on_conflict_do_update(index_elements=keys, set_=changes, where=where)
    result = cast(CursorResult[Any], db.session.execute(statement))
    return result.rowcount == 1


def _audit(action: str, actor: User | None, subject: User | None, before: TradingStatus, after: TradingStatus) -> None:
    details = {"from": before.state.value, "to": after.state.value, "reason": after.reason, "by": after.by}
    audit.record(action, actor=actor, subject=subject, details=details)
