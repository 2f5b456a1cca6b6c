"""In the browser, against the real processes: a protected paper trade from the ticket to its stop,
a risk rejection in words, and an admin halt that refuses entries while exits still work."""

from __future__ import annotations

import re
from decimal import Decimal

from playwright.sync_api import Page, expect

from models import BrokerConnection, Order, Trade, User
from tests.browser.helpers import ConsoleErrors, PageFactory, fill_ticket, log_in, reload_until
from tests.support import make_user
from tests.trading_support import CRYPTO, ask, ticket
from tests.venues import eventually
from utils.enums import OrderPurpose, Role, TradeStatus
from utils.extensions import db
from utils.money import usd
from utils.services import orders, paper_market
from utils.tasks.trading import submit_order


def protected_buy(page: Page, connection: BrokerConnection) -> None:
    """Fill in a 0.01 BTC market buy with a stop 5% under the market, preview it, place it."""
    stop = (ask(connection) * Decimal("0.95")).quantize(Decimal("0.01"))
    fill_ticket(page, connection_id=str(connection.id), symbol=CRYPTO, quantity="0.01", stop_loss_price=str(stop))
    page.locator("#preview").click()
    expect(page.locator("#preview-outcome")).to_have_attribute("data-allowed", "true")
    expect(page.locator("#preview-exposure")).to_be_visible()
    page.locator("#place-order").click()
    expect(page).to_have_url(re.compile(r"/orders/?$"))


def the_trade() -> Trade:
    db.session.rollback()  # see the processes' commits
    return db.session.scalars(db.select(Trade)).one()


def test_a_protected_paper_entry_fills_and_its_stop_closes_it_with_realized_pnl(
    open_page: PageFactory, paper: BrokerConnection
) -> None:
    page = open_page()
    log_in(page, paper.user.email)
    protected_buy(page, paper)

    page.goto("/positions/")
    reload_until(page, page.locator("tr", has_text=CRYPTO).locator(".protection-native"), "the broker-held stop")

    paper_market.shift_price(CRYPTO, "-10")  # the test hook on the paper feed: the market gaps down
    reload_until(page, page.get_by_text("No open positions."), "the stop to close the position")

    trade = the_trade()
    assert trade.status == TradeStatus.CLOSED and trade.realized_pnl is not None and trade.realized_pnl < 0
    page.goto("/")
    expect(page.locator("#pnl-detail")).to_contain_text(f"Realized {usd(trade.realized_pnl)}")


def test_a_risk_rejection_says_why_and_keeps_the_ticket(
    open_page: PageFactory, console_errors: ConsoleErrors, paper: BrokerConnection
) -> None:
    console_errors.expect("status of 422")  # the refused ticket comes back as 422 with its reasons
    page = open_page()
    log_in(page, paper.user.email)
    stop = (ask(paper) * Decimal("0.95")).quantize(Decimal("0.01"))
    fill_ticket(page, symbol=CRYPTO, quantity="10", stop_loss_price=str(stop))  # about $950,000

    page.locator("#preview").click()
    expect(page.locator("#preview-outcome")).to_have_attribute("data-allowed", "false")
    expect(page.locator("#preview-rules tr[data-rule='max_order_notional']")).to_contain_text("fails")

    page.locator("#place-order").click()
    expect(page.locator("#ticket-error")).to_contain_text("refused by your risk limits")
    reason = re.compile(r"This order is worth \$[\d,.]+; your limit per order is \$25,000.00")
    expect(page.locator("#ticket-error")).to_contain_text(reason)
    expect(page.locator("#quantity")).to_have_value("10")
    assert db.session.scalar(db.select(db.func.count(Order.id))) == 0


def test_an_admin_halt_refuses_the_traders_entries_while_an_exit_still_works(
    open_page: PageFactory, console_errors: ConsoleErrors, paper: BrokerConnection
) -> None:
    console_errors.expect("status of 422")
    trader: User = paper.user
    entry = orders.place_order(trader, ticket(paper))
    submit_order.delay(entry.id)  # as the ticket does: the worker process sends it
    make_user("root@example.com", Role.SUPERADMIN)
    admin, trader_page = open_page(), open_page()
    log_in(admin, "root@example.com")
    log_in(trader_page, trader.email)
    trader_page.goto("/positions/")
    reload_until(trader_page, trader_page.locator("tr", has_text=CRYPTO).locator(".protection-native"), "the entry")

    admin.goto(f"/admin/users/{trader.id}")
    admin.get_by_label("Trading state").select_option("halted")
    admin.get_by_label("Reason (required to restrict)").fill("Risk review of this account")
    admin.get_by_label("I understand this changes what can be traded").check()
    admin.get_by_role("button", name="Change trading state").click()
    expect(admin.get_by_text("HALTED", exact=False).first).to_be_visible()

    fill_ticket(
        trader_page,
        symbol=CRYPTO,
        quantity="0.01",
        stop_loss_price=str((ask(paper) * Decimal("0.95")).quantize(Decimal("0.01"))),
    )
    trader_page.locator("#place-order").click()
    expect(trader_page.locator("#ticket-error")).to_contain_text("Risk review of this account")
    entries = db.select(db.func.count(Order.id)).where(Order.purpose == OrderPurpose.ENTRY)
    assert db.session.scalar(entries) == 1, "only the entry placed before the halt"

    trader_page.goto("/positions/")
    trader_page.locator("tr", has_text=CRYPTO).get_by_role("button", name="Close").click()
    expect(trader_page.get_by_text("Closing at market.")).to_be_visible()
    reload_until(trader_page, trader_page.get_by_text("No open positions."), "the exit to close the position")
    assert eventually(lambda: the_trade().status == TradeStatus.CLOSED, "the trade to be closed")
