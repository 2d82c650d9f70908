"""The demo in a real browser: headless Chromium (Debian's) driven by
Playwright, against the example app served on loopback. Screenshots of each
page go to test-artifacts/."""

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from .servers import IN_CI, free_port, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def require(condition, message):
    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The example app on the embedded server, as `flask run` serves it, away
    from the REDIS_* variables and .env files around the checkout."""
    port = free_port()
    folder = tmp_path_factory.mktemp("demo")
    (folder / ".env").write_text("")  # hides any .env in the folders above
    log = (folder / "server.log").open("w")
    outside = {name: value for name, value in os.environ.items()
               if not name.startswith("REDIS_")}
    environment = {**outside, "REDIS_URL": "memory://browser-test",
                   "REDIS_OTP_RESEND_COOLDOWN": "0", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "example_app", "run", "--port", str(port)],
        cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def answers():
        assert process.poll() is None, "the demo server exited"
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            return response.status == 200

    wait_until(answers, 30, "the demo server")
    yield base
    process.terminate()
    process.wait(10)
    log.close()


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    require(executable, "Chromium is not installed (apt-get install chromium)")
    require((ROOT / "node_modules" / "socket.io-client").exists(),
            "the Socket.IO client is not installed (npm install)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable,
                                              args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def log_in(page, base, phone, shot=None):
    page.goto(base)
    page.fill("#phone", phone)
    page.click("#send-code")
    code = page.locator("#dev-sms").inner_text().split()[-1]
    if shot:
        page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    page.fill("#code", code)
    page.click("#verify")
    page.wait_for_selector("text=Who is online")


def panel_status(page):
    """The panel's status once its first health check has answered."""
    return page.wait_for_selector("#redis-status.ok, #redis-status.down").inner_text()


def online(page):
    return page.locator("#online li")


def test_login_presence_and_cache_in_two_browsers(demo, browser):
    first = browser.new_context(viewport={"width": 1200, "height": 800})
    page = first.new_page()
    log_in(page, demo, "+1 555 000 0001", shot="1-login.png")
    assert panel_status(page) == "Connected"
    assert "fakeredis" in page.inner_text("#redis-server")
    mine = '#online li[data-user="+15550•••01"]'
    page.wait_for_selector(mine)  # the page's own socket marked us online
    assert page.inner_text(mine).endswith("you")

    second = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    other = second.new_page()
    log_in(other, demo, "+1 555 000 0002")
    theirs = '#online li[data-user="+15550•••02"]'
    page.wait_for_selector(theirs, timeout=10_000)  # arrived live, no reload
    other.wait_for_selector(mine)
    page.screenshot(path=str(ARTIFACTS / "2-online-two-users.png"), full_page=True)
    other.screenshot(path=str(ARTIFACTS / "3-online-on-a-phone.png"), full_page=True)

    second.close()  # the browser goes away: its socket disconnects
    page.wait_for_selector(theirs, state="detached", timeout=10_000)
    assert online(page).count() == 1

    page.goto(f"{demo}/profile")
    assert "Cache miss" in page.inner_text("#cache-state")
    page.reload()
    assert "Cache hit" in page.inner_text("#cache-state")
    page.screenshot(path=str(ARTIFACTS / "4-profile-cache-hit.png"), full_page=True)
    page.click("#invalidate")
    assert "Cache miss" in page.inner_text("#cache-state")
    first.close()


def test_wrong_codes_are_explained(demo, browser):
    context = browser.new_context()
    page = context.new_page()
    page.goto(demo)
    page.fill("#phone", "+1 555 000 0003")
    page.click("#send-code")
    code = page.locator("#dev-sms").inner_text().split()[-1]
    page.fill("#code", "000000" if code != "000000" else "111111")
    page.click("#verify")
    assert "4 attempts left" in page.inner_text(".notice.error")
    page.screenshot(path=str(ARTIFACTS / "5-wrong-code.png"), full_page=True)
    context.close()


@pytest.mark.parametrize("outage", ["503", "no answer"])
def test_the_panel_shows_an_outage(demo, browser, outage):
    context = browser.new_context()
    page = context.new_page()
    report = {"ok": False, "latency_ms": None, "server_version": None,
              "error": "ConnectionError: Connection refused"}
    if outage == "503":
        page.route("**/health", lambda route: route.fulfill(status=503, json=report))
    else:
        page.route("**/health", lambda route: route.abort("connectionrefused"))
    page.goto(demo)
    assert panel_status(page) == "Unavailable"
    expected = report["error"] if outage == "503" else "The health check did not answer."
    assert page.inner_text("#redis-error") == expected
    assert page.inner_text("#redis-latency") == "\u2013"
    context.close()
