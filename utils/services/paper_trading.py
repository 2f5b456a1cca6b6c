"""Background matching for the paper broker: resting orders fill without anyone opening the account.

The paper broker matches lazily, on every call that touches an account. ``match_working_orders``
(run by Celery Beat every PAPER_MATCH_INTERVAL seconds) gives each account with working orders one
matching pass, so resting limit, stop and trailing orders fill on time; one account's failure is
logged and the others still get their pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import BrokerConnection
from utils.brokers.paper import PaperBroker
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.observability import get_logger
from utils.services.connections import broker_for
from utils.services.paper_ledger import paper_connections_with_working_orders

log = get_logger(__name__)


@dataclass(frozen=True)
class MatchSummary:
    """What one background matching run did."""

    accounts: int
    matched: int
    failed: int


def match_working_orders() -> MatchSummary:
    """Run one matching pass on every paper account with working orders; each pass commits on its own."""
    targets = [(connection.id, connection) for connection in paper_connections_with_working_orders()]
    matched = 0
    for connection_id, connection in targets:
        try:
            advance_account(connection)
        except Exception:  # one broken account must not hold up everyone else's fills
            db.session.rollback()
            log.exception("paper.match_failed", connection_id=connection_id)
        else:
            matched += 1
    return MatchSummary(accounts=len(targets), matched=matched, failed=len(targets) - matched)


def advance_account(connection: BrokerConnection) -> None:
    """One matching pass of a paper connection's working orders at the current prices."""
    broker = broker_for(connection)
    if not isinstance(broker, PaperBroker):
        raise InvalidInputError(f"Connection {connection.id} is not a paper connection.")
    broker.process()
