"""The demo app, driven through Flask's test client on the embedded server
(and, for what a page costs Redis, on a real one)."""

import os
import re

import pytest

from example_app import create_app, redis_ext
from flask_core_redis.integrations.queues import queue

from .servers import free_port

PHONE = "+1 555 010 9988"


@pytest.fixture
def no_outside_config(monkeypatch, tmp_path):
    """No REDIS_* variable, and an empty .env here, which hides any .env in the
    folders above (python-dotenv looks upwards from the working directory)."""
    for name in [name for name in os.environ if name.startswith("REDIS_")]:
        monkeypatch.delenv(name)
    (tmp_path / ".env").write_text("")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def demo_app(no_outside_config):
    """Make the demo app; flush and close its Redis after the test."""
    made = []

    def make(config):
        app = create_app({"TESTING": True, **config})
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            redis_ext.client.flushdb()
            redis_ext.close()


@pytest.fixture
def app(demo_app):
    return demo_app({"REDIS_URL": "memory://demo-test", "REDIS_OTP_RESEND_COOLDOWN": 0})


def send_code(web, phone=PHONE):
    web.post("/login/code", data={"phone": phone})
    page = web.get("/").get_data(as_text=True)
    return re.search(r"Your login code is (\d{6})", page).group(1)


def test_runs_on_the_embedded_server_by_default(demo_app):
    app = demo_app({})
    with app.app_context():
        assert redis_ext.settings.address == "memory://example-app"
    web = app.test_client()
    web.post("/login/verify", data={"code": send_code(web)})
    assert "Who is online" in web.get("/").get_data(as_text=True)
    health = web.get("/health").get_json()
    assert health["ok"] is True and health["mode"] == "memory"


def test_the_page_shows_the_configuration_and_leaves_the_server_to_the_panel(app):
    page = app.test_client().get("/").get_data(as_text=True)
    with app.app_context():
        enabled = ", ".join(sorted(redis_ext.plugins))
    assert "<code>memory://demo-test</code>" in page and f"<dd>{enabled}</dd>" in page
    assert 'data-health-url="/health"' in page and "redis-panel.js" in page


def test_phone_login_with_a_one_time_code(app):
    web = app.test_client()
    code = send_code(web)
    wrong = "000000" if code != "000000" else "111111"
    refused = web.post("/login/verify", data={"code": wrong}, follow_redirects=True)
    assert "4 attempts left" in refused.get_data(as_text=True)
    web.post("/login/verify", data={"code": code})
    dashboard = web.get("/").get_data(as_text=True)
    assert "Who is online" in dashboard and "+15550•••88" in dashboard


def test_code_is_never_stored_in_plain_text(app):
    web = app.test_client()
    code = send_code(web)
    with app.app_context():
        client = queue(redis_ext, "sms").connection
        values = []
        for key in client.scan_iter():
            kind = client.type(key)
            if kind == b"string":
                values.append(client.get(key))
            elif kind == b"hash":
                values += client.hgetall(key).values()
            elif kind == b"list":
                values += client.lrange(key, 0, -1)
    assert values and not [v for v in values if code.encode() in v]


def test_lockout_and_invalid_phone_are_explained(app):
    web = app.test_client()
    send_code(web)
    for _ in range(5):
        page = web.post("/login/verify", data={"code": "999999"}, follow_redirects=True)
    assert "Too many wrong codes" in page.get_data(as_text=True)
    for not_a_phone in ("call me", "+1 555", "+1 555 010 9988 ext. 12", "\u260e" * 9):
        bad = web.post("/login/code", data={"phone": not_a_phone}, follow_redirects=True)
        page = bad.get_data(as_text=True)
        assert "That is not a phone number: use digits, e.g. +1 555 010 9988." in page


def test_asking_again_too_soon_says_how_long_to_wait(demo_app):
    web = demo_app({"REDIS_URL": "memory://demo-test"}).test_client()
    send_code(web)
    again = web.post("/login/code", data={"phone": PHONE}, follow_redirects=True)
    assert re.search(r"A code was sent moments ago\. You can ask for a new one in \d+ s\.",
                     again.get_data(as_text=True))


def test_cached_profile_shows_miss_hit_and_invalidation(app):
    web = app.test_client()
    web.post("/login/verify", data={"code": send_code(web)})
    assert "Cache miss" in web.get("/profile").get_data(as_text=True)
    assert "Cache hit" in web.get("/profile").get_data(as_text=True)
    after = web.post("/profile/invalidate", follow_redirects=True).get_data(as_text=True)
    assert "invalidated" in after and "Cache miss" in after


def test_health_endpoint_and_cli(app):
    assert app.test_client().get("/health").get_json()["ok"] is True
    result = app.test_cli_runner().invoke(args=["redis", "ping"])
    assert result.exit_code == 0 and result.output.startswith("PONG")


def test_broadcast_needs_a_logged_in_user(app):
    web = app.test_client()
    assert web.post("/api/broadcast", json={"text": "hi"}).status_code == 401
    web.post("/login/verify", data={"code": send_code(web)})
    assert web.post("/api/broadcast", json={"text": "hi"}).get_json() == {"sent": True}


def test_a_redis_outage_is_explained_on_the_login_form(no_outside_config):
    app = create_app({"TESTING": True, "REDIS_URL": f"redis://127.0.0.1:{free_port()}",
                      "REDIS_MAX_RETRIES": 0})  # nobody listens there
    refused = app.test_client().post("/login/code", data={"phone": PHONE},
                                     follow_redirects=True)
    with app.app_context():
        redis_ext.close()
    assert "Login codes are unavailable right now" in refused.get_data(as_text=True)


def ping_and_info_calls(admin):
    stats = admin.info("commandstats")
    return {command: stats.get(f"cmdstat_{command}", {}).get("calls", 0)
            for command in ("ping", "info")}


@pytest.mark.integration
def test_rendering_pages_sends_no_ping_and_no_info(own_redis_server, demo_app):
    app = demo_app({"REDIS_URL": f"redis://{own_redis_server.address}"})
    signed = app.session_interface.get_signing_serializer(app).dumps
    # The login page reads the pending phone's outbox; the others render for a user.
    visitor = {"Cookie": f"session={signed({'pending_phone': '+15550109988'})}"}
    user = {"Cookie": f"session={signed({'user': '+15550109977'})}"}
    web = app.test_client(use_cookies=False)  # each request sends only its cookie
    with own_redis_server.client() as admin:
        before = ping_and_info_calls(admin)
        for cookie, path in [(visitor, "/"), (user, "/"), (user, "/profile"),
                             (user, "/profile")]:
            assert web.get(path, headers=cookie).status_code == 200
        after_pages = ping_and_info_calls(admin)
        assert web.get("/health").get_json()["ok"] is True
        after_health = ping_and_info_calls(admin)
    # INFO counts a call once it has answered: each reading adds one to the next.
    assert after_pages == {"ping": before["ping"], "info": before["info"] + 1}
    assert after_health == {"ping": after_pages["ping"] + 1, "info": after_pages["info"] + 2}
