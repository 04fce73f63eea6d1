"""Shared by the browser tests: every test here is marked ``browser`` and skipped without Debian's
Chromium (unless FTPLATFORM_REQUIRE_BROWSER is set: .ci/run installs chromium and sets it, so
there a missing browser fails); ``browser`` launches it headless through Playwright and
``signed_in`` logs a user into the admin in a fresh browser context."""
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("FTPLATFORM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
PASSWORD = "correct horse battery staple"
HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` selection looks at the marks
def pytest_collection_modifyitems(items):
    skip = pytest.mark.skipif(not CHROMIUM and not os.environ.get("FTPLATFORM_REQUIRE_BROWSER"),
                              reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(skip)


@pytest.fixture
def browser():
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls made by the
    # test itself between page actions are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def signed_in(browser, live_server):
    """``signed_in(user)``: a page in a new browser context, logged into the admin as ``user``
    (whose password is set here)."""

    def sign_in(user):
        user.set_password(PASSWORD)
        user.save()
        page = browser.new_context().new_page()
        page.set_default_timeout(15000)
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        return page

    return sign_in
