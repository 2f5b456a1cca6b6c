"""In the browser: admin pages are refused to traders, and forms without our CSRF token are refused."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from models import BrokerConnection, User
from tests.browser.helpers import ConsoleErrors, PageFactory, log_in
from tests.support import make_user
from utils.enums import Role

ADMIN_PAGES = (
    "/admin/",
    "/admin/users/",
    "/admin/system/",
    "/admin/system/audit",
    "/admin/trading/",
    "/admin/brokers/",
)


def test_admin_pages_are_refused_to_a_trader_and_open_to_the_superadmin(
    open_page: PageFactory, console_errors: ConsoleErrors, trader: User
) -> None:
    console_errors.expect("status of 403 (FORBIDDEN)")
    make_user("root@example.com", Role.SUPERADMIN)
    trader_page, admin_page = open_page(), open_page()
    log_in(trader_page, trader.email)
    log_in(admin_page, "root@example.com")

    expect(trader_page.get_by_role("link", name="Admin")).to_have_count(0)
    for path in ADMIN_PAGES:
        answer = trader_page.goto(path)
        assert answer is not None and answer.status == 403, path
        expect(trader_page.get_by_text("You do not have permission to do that.")).to_be_visible()
        answer = admin_page.goto(path)
        assert answer is not None and answer.status == 200, path


def test_a_form_post_without_our_csrf_token_is_refused(open_page: PageFactory, paper: BrokerConnection) -> None:
    page = open_page()
    log_in(page, paper.user.email)
    page.goto("/positions/")

    # A cross-site form (no token) and a forged token: both refused, the session still signed in.
    for form in ({}, {"csrf_token": "forged"}):
        answer = page.request.post("/auth/logout", form=form, max_redirects=0)
        assert answer.status == 400, form
        assert "The form expired or was not sent from this site" in answer.text()
    page.reload()
    expect(page.get_by_role("button", name=re.compile("Log out"))).to_be_visible()

    # The page's own form carries the token and works.
    page.get_by_role("button", name=re.compile("Log out")).click()
    expect(page).to_have_url(re.compile("/auth/login"))
