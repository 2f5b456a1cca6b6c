"""The superadmin's status page in one read, and the hourly broker API check that feeds it.

Background jobs leave their latest report in a SystemSetting (``system.store_status``); this
module reads them next to the readiness checks, heartbeats, monitor runs, queue depths, open
reconciliation drift and Schwab login upkeep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models import BrokerConnection, DriftAlert, Heartbeat, MonitorRun
from utils.enums import ConnectionStatus, Provider
from utils.extensions import db
from utils.money import utcnow
from utils.services import connections, monitor, system
from utils.services.schwab_logins import UPKEEP_STATUS_KEY

BROKER_STATUS_KEY = "broker_api_status"


@dataclass(frozen=True)
class ProviderStatus:
    """The last API check of one provider: its connections answered (healthy) or not."""

    provider: str
    checked_at: str
    connections: int
    healthy: int
    detail: str

    @property
    def ok(self) -> bool:
        """True when every connection of the provider answered."""
        return self.healthy == self.connections


@dataclass(frozen=True)
class PlatformStatus:
    """Everything the admin status page shows."""

    readiness: system.Readiness
    heartbeats: list[Heartbeat]
    monitor_runs: list[MonitorRun]
    queue_depths: dict[str, int] | None
    brokers: list[ProviderStatus]
    open_drift: int
    login_upkeep: dict[str, Any]
    reconnect_needed: int


def overview() -> PlatformStatus:
    """Read every part of the platform's status (no broker calls: those run hourly in the worker)."""
    return PlatformStatus(
        readiness=system.check_readiness(),
        heartbeats=system.list_heartbeats(),
        monitor_runs=monitor.recent_runs(),
        queue_depths=system.queue_depths(),
        brokers=broker_statuses(),
        open_drift=_count(db.select(db.func.count(DriftAlert.id)).where(DriftAlert.resolved_at.is_(None))),
        login_upkeep=system.read_status(UPKEEP_STATUS_KEY),
        reconnect_needed=_count(
            db.select(db.func.count(BrokerConnection.id)).where(
                BrokerConnection.provider == Provider.SCHWAB,
                BrokerConnection.status == ConnectionStatus.RECONNECT_NEEDED,
            )
        ),
    )


def check_broker_apis() -> list[ProviderStatus]:
    """Call every connection's broker once (as ``flask brokers ping`` does), keep the outcome per
    provider for the status page, commit, and return it."""
    checked = connections.check_all_connections()
    now = utcnow().isoformat(timespec="seconds")
    report: dict[str, Any] = {}
    for provider in Provider:
        mine = [c for c in checked if c.provider == provider]
        if mine:
            failing = [c.status_detail or c.status.value for c in mine if c.status != ConnectionStatus.CONNECTED]
            report[provider.value] = {
                "checked_at": now,
                "connections": len(mine),
                "healthy": len(mine) - len(failing),
                "detail": failing[0][:200] if failing else "",
            }
    system.store_status(BROKER_STATUS_KEY, report)
    db.session.commit()
    return broker_statuses()


def broker_statuses() -> list[ProviderStatus]:
    """The last stored check per provider (empty before the first check has run)."""
    stored = system.read_status(BROKER_STATUS_KEY)
    return [ProviderStatus(provider=name, **values) for name, values in sorted(stored.items())]


def _count(statement: Any) -> int:
    return int(db.session.scalar(statement) or 0)
