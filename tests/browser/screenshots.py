"""`make screenshots`: PNGs of the main pages into docs/screenshots/ for the README.

Not collected by `make test` (the file name does not start with test_); run by the Makefile with
the same fixtures as the browser tests: the real processes on loopback, a trader whose paper trades
went through the worker (two open and protected, one closed by its stop after a paper price shock),
and a month of equity snapshots and closed trades so the charts have a history.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from playwright.sync_api import Page

from models import BrokerConnection, Order, User
from tests.browser.helpers import PageFactory, fill_ticket, log_in, reload_until
from tests.processes import ROOT
from tests.support import make_user
from tests.trading_support import add_snapshot, add_trade, ask, ticket
from tests.venues import eventually
from utils.enums import OrderPurpose, Role, TradeStatus
from utils.extensions import db
from utils.money import utcnow
from utils.services import orders, paper_market
from utils.tasks.trading import submit_order

SHOTS = ROOT / "docs" / "screenshots"
TRADER_PAGES = (
    ("dashboard", "/"),
    ("positions", "/positions/"),
    ("orders", "/orders/"),
    ("price-chart", "/charts/{connection}/BTC-USD"),
    ("notifications", "/notifications/"),
    ("connections", "/connections/"),
    ("api-tokens", "/account/tokens/"),
    ("profile", "/account/profile"),
    ("two-factor", "/account/two-factor"),
)
ADMIN_PAGES = (
    ("admin-users", "/admin/users/"),
    ("admin-user", "/admin/users/{trader}"),
    ("admin-system", "/admin/system/"),
    ("admin-audit", "/admin/system/audit"),
    ("admin-trading", "/admin/trading/"),
    ("api-docs", "/api/docs"),
)


def enter(paper: BrokerConnection, symbol: str, quantity: str) -> None:
    """A market buy with a stop 5% under the market, sent by the worker as the ticket does it."""
    stop = (ask(paper, symbol) * Decimal("0.95")).quantize(Decimal("0.01"))
    request = ticket(paper, symbol=symbol, quantity=Decimal(quantity), stop_loss_price=stop)
    submit_order.delay(orders.place_order(paper.user, request).id)


def history(user: User, paper: BrokerConnection) -> None:
    """Thirty days of closed trades and equity snapshots behind the live trades."""
    now, days = utcnow(), range(30, 0, -1)
    pnls = {day: Decimal((day * 7919) % 3001 - 1200) for day in days}  # a mix of winning and losing days
    equity = Decimal(1_000_000) - sum(pnls.values())  # so the curve ends at the account's equity today
    for day, pnl in pnls.items():
        closed_at = now - timedelta(days=day)
        add_trade(user, paper, status=TradeStatus.CLOSED, realized_pnl=pnl, opened_at=closed_at, closed_at=closed_at)
        equity += pnl
        add_snapshot(user, paper, closed_at, equity)


def shoot(page: Page, name: str, path: str) -> None:
    """Open ``path`` and save a full-page PNG once the live parts and charts have settled."""
    page.goto(path)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def shoot_ticket(page: Page, paper: BrokerConnection) -> None:
    """The order ticket with its risk preview showing."""
    stop = (ask(paper, "ETH-USD") * Decimal("0.96")).quantize(Decimal("0.01"))
    fill_ticket(page, symbol="ETH-USD", quantity="2", order_type="limit", limit_price=str(ask(paper, "ETH-USD")))
    page.locator("#stop_loss_price").fill(str(stop))
    page.locator("#preview").click()
    page.locator("#preview-rules").wait_for()
    page.screenshot(path=str(SHOTS / "order-ticket.png"), full_page=True)


def test_screenshots(open_page: PageFactory, paper: BrokerConnection) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    trader = paper.user
    admin = make_user("admin@example.com", Role.SUPERADMIN)
    history(trader, paper)
    for symbol, quantity in (("BTC-USD", "0.05"), ("ETH-USD", "1"), ("SOL-USD", "20")):
        enter(paper, symbol, quantity)
    sent = db.select(db.func.count(Order.id)).where(
        Order.purpose == OrderPurpose.ENTRY, Order.broker_order_id.is_not(None)
    )
    eventually(lambda: db.session.scalar(sent) == 3, "the entries to reach the broker", timeout=30)
    paper_market.shift_price("SOL-USD", "-8")  # SOL gaps through its stop: closed with a loss

    login_page = open_page()
    shoot(login_page, "login", "/auth/login")
    page = open_page()
    log_in(page, trader.email)
    page.goto("/positions/")
    reload_until(page, page.locator(".protection-native"), "protected positions")
    for name, path in TRADER_PAGES:
        shoot(page, name, path.format(connection=paper.id))
    shoot_ticket(page, paper)

    admin_page = open_page()
    log_in(admin_page, admin.email)
    for name, path in ADMIN_PAGES:
        shoot(admin_page, name, path.format(trader=trader.id))
    paper_market.reset_prices()
