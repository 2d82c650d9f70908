"""The demo app, driven through Flask's test client on the embedded server."""

import re

import pytest

from example_app import EMBEDDED_URL, create_app, redis_ext

PHONE = "+1 555 010 9988"


@pytest.fixture
def no_outside_config(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("REDIS_URL", "REDIS_HOST", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def app(no_outside_config):
    app = create_app({"TESTING": True, "REDIS_URL": "memory://demo-test",
                      "REDIS_OTP_RESEND_COOLDOWN": 0})
    yield app
    with app.app_context():
        redis_ext.client.flushdb()
        redis_ext.close()


def send_code(web, phone=PHONE):
    web.post("/login/code", data={"phone": phone})
    page = web.get("/").get_data(as_text=True)
    return re.search(r"Your login code is (\d{6})", page).group(1)


def test_runs_on_the_embedded_server_by_default(no_outside_config):
    app = create_app({"TESTING": True})
    with app.app_context():
        assert redis_ext.settings.address == EMBEDDED_URL
        redis_ext.close()
    page = app.test_client().get("/").get_data(as_text=True)
    assert "Log in with your phone" in page and "Connected" in page


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
        client = redis_ext.queue("sms").connection
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
    bad = web.post("/login/code", data={"phone": "call me"}, follow_redirects=True)
    assert "invalid phone number" in bad.get_data(as_text=True)


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
