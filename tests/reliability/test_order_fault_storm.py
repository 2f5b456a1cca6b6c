"""REL-01 Order fault storm: intents sent through a real worker into brokers that misbehave.

Entries are placed through the order gateway (half on the Schwab fake, half on the Coinbase fake)
and handed to a real Celery worker (a pool of threads), exactly as the web adapters do. The fakes'
order routes draw a fault for a share of requests from a seeded RNG: 5xx before the order exists,
a read timeout after it exists, 429 with Retry-After, a connection reset before the broker sees
the request, an accepted order whose answer is dropped, and 201 without a Location (Schwab) or
without an order id (Coinbase). Then every working order is executed at the broker and three
cycles of what beat runs (order tracking, reconciliation) follow.

Pass criteria, counted in the brokers' OWN order books: 0 duplicate orders (Coinbase: per client
order id; Schwab, which has none: per intent, each Schwab intent having its own quantity), 0 lost
intents (each ends FILLED with the broker's order id when the broker has its order, REJECTED when
it has none), 0 left UNKNOWN.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from models import AuditLog, Order, User
from tests.fakes.coinbase import PREFIX
from tests.fakes.schwab import ORDERS_RULE
from tests.fakes.server import Fault, InjectedFault
from tests.reliability.worker import queue_drained, thread_worker
from tests.scale import scaled
from tests.support import TEST_REDIS_URL, make_user
from tests.venues import CRYPTO, EQUITY, Fakes, eventually, open_venue, running_fakes
from utils.enums import OrderSide, OrderStatus
from utils.extensions import db
from utils.services import orders
from utils.services.order_tickets import OrderTicket
from utils.tasks.reconciliation import reconcile_all
from utils.tasks.trading import submit_order, track_orders

INTENTS = scaled(ci=200, soak=1000)
FAULT_CHANCE = 0.4
STORM = (
    InjectedFault(Fault.SERVER_ERROR),
    InjectedFault(Fault.READ_TIMEOUT, {"seconds": 1.0}),
    InjectedFault(Fault.RATE_LIMITED, {"retry_after": 1}),
    InjectedFault(Fault.CONNECTION_RESET),
    InjectedFault(Fault.DROP_AFTER_ACCEPT),
    InjectedFault(Fault.NO_LOCATION),
)
GIVE_UP_SECONDS = 2  # an unseen order the broker does not show by then was not placed
CYCLES, CYCLE_SECONDS = 3, 1.0
COIN_QUANTITY = Decimal("0.001")
LIMITS = ("RISK_MAX_ORDER_NOTIONAL", "RISK_MAX_POSITION_NOTIONAL", "RISK_MAX_TOTAL_EXPOSURE",
          "RISK_MAX_OPEN_POSITIONS", "RISK_MAX_ORDERS_PER_DAY", "RISK_MAX_DAILY_LOSS")  # fmt: skip
UNLIMITED = dict.fromkeys(LIMITS, "off")

pytestmark = pytest.mark.skipif(not TEST_REDIS_URL, reason="the worker takes its tasks from Redis")


@pytest.fixture()
def fakes() -> Iterator[Fakes]:
    with running_fakes() as running:
        account = running.schwab.accounts[running.schwab_account]
        account.cash = account.buying_power = Decimal("100000000")
        running.coinbase.set_balance("USD", "100000000")
        rng = random.Random(1)  # a reproducible storm
        running.schwab.plan.storm(f"POST {ORDERS_RULE}", FAULT_CHANCE, STORM, rng)
        running.coinbase.plan.storm(f"POST {PREFIX}/orders", FAULT_CHANCE, STORM, rng)
        yield running


@pytest.fixture()
def environ(environ: dict[str, str], fakes: Fakes) -> dict[str, str]:
    """Short broker timeouts and give-up; no exposure limits or stop requirement (entries only)."""
    return (
        environ
        | fakes.environ()
        | UNLIMITED
        | {
            "BROKER_READ_TIMEOUT": "0.5",
            "ORDER_LOOKUP_GIVE_UP": str(GIVE_UP_SECONDS),
            "SCHWAB_ORDER_WRITES_PER_MINUTE": "100000",
            "RISK_REQUIRE_STOP_LOSS": "false",
            "RISK_MAX_QUOTE_AGE_SECONDS": "3600",
        }
    )


def tickets(schwab_connection: int, coinbase_connection: int) -> Iterator[OrderTicket]:
    """Alternating market buys: Schwab ones each with its own quantity (1, 2, 3 ...), Coinbase ones alike."""
    for index in range(INTENTS):
        if index % 2 == 0:
            yield OrderTicket(schwab_connection, EQUITY, OrderSide.BUY, Decimal(index // 2 + 1))
        else:
            yield OrderTicket(coinbase_connection, CRYPTO, OrderSide.BUY, COIN_QUANTITY)


def still_sending() -> int:
    """Intents not yet answered by a broker: waiting for a worker, or claimed and in flight."""
    waiting = (Order.status == OrderStatus.PENDING_SUBMIT) | (
        (Order.status == OrderStatus.SUBMITTED) & Order.broker_order_id.is_(None)
    )
    return int(db.session.scalar(db.select(db.func.count(Order.id)).where(waiting)) or 0)


def count_status(status: OrderStatus) -> int:
    return int(db.session.scalar(db.select(db.func.count(Order.id)).where(Order.status == status)) or 0)


def execute_working_schwab_orders(fakes: Fakes) -> None:
    """Schwab market orders rest until executed: fill every one at the ask."""
    with fakes.schwab.lock:
        for order_id, order in fakes.schwab.orders.items():
            if order["status"] == "WORKING":
                fakes.schwab.fill(order_id, order["remainingQuantity"], "100.01")


def broker_books(fakes: Fakes) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The brokers' own orders per intent key: ("schwab", quantity) and ("coinbase", client order id)."""
    books: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for order in fakes.schwab.orders.values():
        books[("schwab", str(int(order["quantity"])))].append({"id": str(order["orderId"]), **order})
    for order in fakes.coinbase.orders.values():
        books[("coinbase", order["client_order_id"])].append({"id": order["order_id"], **order})
    return books


def intent_key(order: Order) -> tuple[str, str]:
    if order.symbol == EQUITY:
        return ("schwab", str(int(order.quantity)))
    return ("coinbase", order.client_order_id)


def verdicts(fakes: Fakes) -> dict[str, list[Any]]:
    """Each intent judged against the broker's book: duplicate, lost (not matching), unknown, or fine."""
    books = broker_books(fakes)
    found: dict[str, list[Any]] = defaultdict(list)
    db.session.rollback()
    for order in db.session.scalars(db.select(Order).order_by(Order.id)):
        at_broker = books.get(intent_key(order), [])
        if len(at_broker) > 1:
            found["duplicate"].append(order.id)
        if order.status == OrderStatus.UNKNOWN:
            found["unknown"].append(order.id)
        elif at_broker and (order.status, order.broker_order_id, order.filled_quantity) == (
            OrderStatus.FILLED,
            at_broker[0]["id"],
            order.quantity,
        ):
            found["filled"].append(order.id)
        elif not at_broker and order.status == OrderStatus.REJECTED:
            found["not_placed"].append(order.id)
        else:
            found["lost"].append(described(order, at_broker))
    return found


def described(order: Order, at_broker: list[dict[str, Any]]) -> str:
    """An intent that does not match the broker, with what each side says (for the failure message)."""
    theirs = [(o["id"], o["status"], o.get("enteredTime") or o.get("created_time")) for o in at_broker]
    statement = db.select(AuditLog.created_at, AuditLog.action, AuditLog.details).where(
        AuditLog.subject_type == "Order", AuditLog.subject_id == str(order.id)
    )
    trail = [(f"{at:%H:%M:%S.%f}", action, details) for at, action, details in db.session.execute(statement)]
    return (
        f"#{order.id} {order.status.value} {order.status_detail!r} sent {order.submitted_at}; broker {theirs}; {trail}"
    )


@pytest.mark.timeout(240)
def test_a_fault_storm_leaves_no_duplicate_no_lost_and_no_unknown_order(app: Flask, fakes: Fakes) -> None:
    user: User = make_user()
    schwab, coinbase = open_venue("schwab", fakes, user), open_venue("coinbase", fakes, user)
    timings: dict[str, float] = {}
    with thread_worker(app):
        started = time.monotonic()
        for ticket in tickets(schwab.connection.id, coinbase.connection.id):
            submit_order.delay(orders.place_order(user, ticket).id)  # what the web adapters do
        timings["placed"] = time.monotonic() - started
        eventually(lambda: still_sending() == 0 and queue_drained(), "every intent to be answered", timeout=120)
        timings["sent"] = time.monotonic() - started
        unknown_after_storm = count_status(OrderStatus.UNKNOWN)
        execute_working_schwab_orders(fakes)
        for _ in range(CYCLES):  # what beat runs: tracking, then reconciliation
            time.sleep(CYCLE_SECONDS)
            track_orders()
            reconcile_all()
        timings["total"] = time.monotonic() - started

    drawn = dict(fakes.schwab.plan.storm_drawn + fakes.coinbase.plan.storm_drawn)
    found = verdicts(fakes)
    summary = {kind: len(ids) for kind, ids in found.items()}
    print(f"REL-01: {INTENTS} intents, faults {drawn}, {unknown_after_storm} UNKNOWN after the storm, "  # noqa: T201
          f"verdicts {summary}, timings {({k: round(v, 1) for k, v in timings.items()})}")  # fmt: skip
    assert set(drawn) == {fault.kind for fault in STORM}, "every kind of fault was injected"
    assert unknown_after_storm > 0, "the storm left outcomes for reconciliation to find"
    assert found["duplicate"] == [], "no order placed twice at a broker"
    assert not found["lost"], "every intent ends as the broker has it:\n" + "\n".join(found["lost"])
    assert found["unknown"] == [], "nothing left UNKNOWN after three cycles"
    assert len(found["filled"]) + len(found["not_placed"]) == INTENTS
