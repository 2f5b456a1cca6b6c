"""What browser tests do the way a person does (log in), and what they watch (the console)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from playwright.sync_api import ConsoleMessage, Locator, Page

from tests.support import DEFAULT_PASSWORD

PageFactory = Callable[[], Page]


def log_in(page: Page, email: str, password: str = DEFAULT_PASSWORD) -> None:
    """Log in through the login form."""
    page.goto("/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


@dataclass
class ConsoleErrors:
    """Console errors and uncaught exceptions seen by a browser context (CSP violations included)."""

    seen: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def expect(self, text: str) -> None:
        """Tolerate console errors containing ``text`` (a page the test expects to be refused)."""
        self.expected.append(text)

    def watch(self, page: Page) -> None:
        """Record this page's errors."""
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.seen.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        seen = f"{message.text} at {message.location.get('url')}"
        if message.type == "error" and not any(text in seen for text in self.expected):
            self.seen.append(seen)


def reload_until(page: Page, locator: Locator, what: str, timeout: float = 30) -> Locator:
    """Reload the page until ``locator`` is visible (for pages without a live part), or fail."""
    deadline = time.monotonic() + timeout
    while not (locator.count() and locator.first.is_visible()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        page.wait_for_timeout(500)
        page.reload()
    return locator


def fill_ticket(page: Page, **fields: str) -> None:
    """Open the order ticket and fill it in (field ids as on the page: symbol, quantity, ...)."""
    page.goto("/orders/new")
    for name, value in fields.items():
        target = page.locator(f"#{name}")
        if target.evaluate("element => element.tagName") == "SELECT":
            target.select_option(value)
        else:
            target.fill(value)
