"""The equity curve and daily P&L behind the dashboard's charts.

Equity: a periodic task (EQUITY_SNAPSHOT_INTERVAL) stores every connected account's balance as
its broker reports it, all rows of one run sharing one ``taken_at``; rows older than
EQUITY_SNAPSHOT_RETENTION_DAYS are deleted by the same run. The curve sums the user's accounts
at each run, carrying an account's last known equity forward when one run could not read it,
so a broker hiccup is not drawn as a crash. Daily P&L: realized P&L of trades by UTC close day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from flask import current_app
from sqlalchemy.engine import CursorResult

from models import BrokerConnection, EquitySnapshot, Trade, User
from utils.enums import ConnectionStatus, TradeStatus
from utils.extensions import db
from utils.money import utcnow
from utils.services import portfolio

CHART_DAYS = 30


@dataclass(frozen=True)
class SnapshotRun:
    """What one snapshot run did."""

    written: int
    unavailable: int
    purged: int


def record_snapshots(now: datetime | None = None) -> SnapshotRun:
    """Snapshot every connected account's balance (one broker call each), purge expired rows, commit."""
    taken_at = now or utcnow()
    connected = db.session.scalars(
        db.select(BrokerConnection).where(BrokerConnection.status == ConnectionStatus.CONNECTED)
    )
    written = unavailable = 0
    for connection in connected:
        balance, _ = portfolio.connection_balance(connection)
        if balance is None:
            unavailable += 1
            continue
        db.session.add(
            EquitySnapshot(
                user_id=connection.user_id,
                connection_id=connection.id,
                taken_at=taken_at,
                currency=balance.currency,
                cash=balance.cash,
                buying_power=balance.buying_power,
                equity=balance.equity,
            )
        )
        written += 1
    cutoff = taken_at - timedelta(days=current_app.config["EQUITY_SNAPSHOT_RETENTION_DAYS"])
    purged = cast(
        CursorResult[Any], db.session.execute(db.delete(EquitySnapshot).where(EquitySnapshot.taken_at < cutoff))
    )
    db.session.commit()
    return SnapshotRun(written, unavailable, purged.rowcount)


def equity_curve(user: User, days: int = CHART_DAYS) -> dict[str, Any]:
    """The user's total equity at each snapshot run of the last ``days`` days, amounts as strings."""
    since = utcnow() - timedelta(days=days)
    rows = db.session.execute(
        db.select(EquitySnapshot.taken_at, EquitySnapshot.connection_id, EquitySnapshot.equity)
        .where(
            EquitySnapshot.user_id == user.id,
            EquitySnapshot.taken_at >= since,
            EquitySnapshot.currency == portfolio.TOTAL_CURRENCY,
        )
        .order_by(EquitySnapshot.taken_at)
    ).all()
    latest: dict[int, Decimal] = {}
    totals: dict[datetime, Decimal] = {}
    for taken_at, connection_id, equity in rows:
        latest[connection_id] = equity
        totals[taken_at] = sum(latest.values(), Decimal(0))
    points = [{"time": moment.isoformat(), "equity": str(total)} for moment, total in totals.items()]
    return {"currency": portfolio.TOTAL_CURRENCY, "points": points}


def daily_pnl(user: User, days: int = CHART_DAYS) -> dict[str, Any]:
    """Realized P&L per UTC day over the last ``days`` days (days without a closed trade left out)."""
    since = portfolio.start_of_day(utcnow()) - timedelta(days=days - 1)
    rows = db.session.execute(
        db.select(Trade.closed_at, Trade.realized_pnl).where(
            Trade.user_id == user.id, Trade.status == TradeStatus.CLOSED, Trade.closed_at >= since
        )
    ).all()
    by_day: dict[date, Decimal] = defaultdict(Decimal)
    for closed_at, pnl in rows:
        by_day[closed_at.date()] += pnl or Decimal(0)
    return {
        "currency": portfolio.TOTAL_CURRENCY,
        "days": [{"day": day.isoformat(), "realized_pnl": str(by_day[day])} for day in sorted(by_day)],
    }
