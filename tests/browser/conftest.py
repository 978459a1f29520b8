"""A real headless Chromium (the system's, never downloaded) against pytest-django's live server.

Playwright's sync API runs an event loop in this thread, which makes Django refuse ORM calls
from it unless told otherwise: the tests set their data up through the ORM and services in the
same thread, so async-unsafe calls are allowed here (and only in the browser tests).
"""

import os

import pytest
from playwright.sync_api import sync_playwright

# The store tests' data: stores, staff, items, transfers and customers.
from tests.store.conftest import (  # noqa: F401
    channels,
    make_customer,
    shipped_transfer,
    staff_a,
    stores,
    variant,
)

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, settings):
    """A fresh browser tab (own cookies) on the live server, tablet-sized."""
    # The live server speaks plain HTTP: cookies marked Secure (production) would be dropped.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1024, "height": 768}, has_touch=True
    )
    context.set_default_timeout(5_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def sign_in(page):
    """Sign in through the store sign-in page; lands on the current store's dashboard."""

    def _sign_in(username, password):
        page.goto("/store/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        return page

    return _sign_in
