"""The OTP plugin, on memory, standalone, Sentinel and Cluster."""

import logging

import pytest

from flask_core_redis import ConfigurationError, RedisUnavailable
from flask_core_redis.plugins.otp import OtpRateLimited, OtpUnavailable, normalize_phone

from .servers import run_concurrently, wait_until

PHONE = "+1 (555) 010-99 88"


@pytest.fixture
def otp_app(mode_app):
    return mode_app({"REDIS_OTP_RESEND_COOLDOWN": 0})


@pytest.fixture
def otp(otp_app):
    app, ext = otp_app
    with app.app_context():
        yield ext.otp


def test_seed_api_verifies_once(otp):
    otp.store_otp(PHONE, "123456", ttl=300)
    assert otp.verify_otp(PHONE, "654321") is False
    assert otp.verify_otp("+15550109988", "123456") is True  # same phone, normalised
    assert otp.verify_otp(PHONE, "123456") is False  # consumed


def test_issue_gives_six_random_digits_and_replaces_the_previous_code(otp):
    first = otp.issue(PHONE)
    second = otp.issue(PHONE)
    assert len(first) == len(second) == 6 and first.isdigit() and second.isdigit()
    if first != second:  # one in a million they match
        assert otp.verify_otp(PHONE, first) is False
    assert otp.verify_otp(PHONE, second) is True


def test_redis_never_holds_the_code(otp_app):
    app, ext = otp_app
    with app.app_context():
        code = ext.otp.issue(PHONE)
        prefix = ext.settings.key_prefix
        keys = list(ext.client.scan_iter(match=f"*{prefix}otp*"))
        assert keys
        stored = []
        for key in keys:
            kind = ext.client.type(key)
            if kind == "hash":
                stored += ext.client.hgetall(key).values()
            elif kind == "string":
                stored.append(ext.client.get(key))
            else:
                stored += ext.client.zrange(key, 0, -1)
            assert ext.client.pttl(key) > 0, f"{key} has no TTL"
    assert not [value for value in stored if code in value]


def test_five_wrong_attempts_lock_the_code(otp):
    code = otp.issue(PHONE)
    wrong = "000000" if code != "000000" else "111111"
    results = [otp.check(PHONE, wrong) for _ in range(5)]
    assert [(r.status, r.attempts_left) for r in results] == [
        ("invalid", 4), ("invalid", 3), ("invalid", 2), ("invalid", 1), ("locked", 0)]
    assert otp.check(PHONE, code).status == "locked"
    assert otp.verify_otp(PHONE, code) is False


def test_unknown_phone_answers_exactly_like_a_wrong_code(otp):
    otp.store_otp("+15550000001", "123456")
    known = [otp.check("+15550000001", "999999") for _ in range(6)]
    unknown = [otp.check("+15550000002", "999999") for _ in range(6)]
    assert known == unknown
    assert known[-1].status == "locked"


def test_expired_code(otp):
    otp.store_otp(PHONE, "123456", ttl=1)
    wait_until(lambda: otp.check(PHONE, "000000").status == "expired", 10,
               "the code to expire", interval=0.2)
    assert otp.verify_otp(PHONE, "123456") is False


def test_concurrent_verification_succeeds_exactly_once(otp):
    code = otp.issue(PHONE)
    results = run_concurrently(*[lambda: otp.verify_otp(PHONE, code)] * 20)
    assert sorted(results) == [False] * 19 + [True]


def test_resend_cooldown_and_send_limit(mode_app):
    app, ext = mode_app({"REDIS_OTP_RESEND_COOLDOWN": 60})
    with app.app_context():
        ext.otp.issue(PHONE)
        with pytest.raises(OtpRateLimited, match="try again in") as caught:
            ext.otp.issue(PHONE)
        assert caught.value.reason == "cooldown" and 0 < caught.value.retry_after <= 60
        ext.otp.issue("+15550000009")  # another phone is not affected
    app, ext = mode_app({"REDIS_OTP_RESEND_COOLDOWN": 0, "REDIS_OTP_MAX_SENDS": 3})
    with app.app_context():
        for _ in range(3):
            ext.otp.issue(PHONE)
        with pytest.raises(OtpRateLimited) as caught:
            ext.otp.store_otp(PHONE, "123456")
        assert caught.value.reason == "too_many" and 0 < caught.value.retry_after <= 600


@pytest.mark.parametrize(("phone", "normalised"), [
    ("+1 (555) 010-99 88", "+15550109988"), ("8 800 555.35.35", "88005553535"),
    ("+447911123456", "+447911123456")])
def test_phone_numbers_are_normalised(phone, normalised):
    assert normalize_phone(phone) == normalised


@pytest.mark.parametrize("phone", ["", "abc", "+12", "12345678901234567", "+1 555 CALL NOW",
                                   None, 15550109988])
def test_invalid_phone_numbers_are_refused(otp, phone):
    with pytest.raises(ValueError, match="invalid phone number"):
        otp.issue(phone)


@pytest.mark.parametrize("code", ["", "12", "12ab56", 123456, None])
def test_invalid_codes_are_refused(otp, code):
    with pytest.raises(ValueError, match="invalid code"):
        otp.verify_otp(PHONE, code)


@pytest.mark.parametrize("use", [
    lambda otp: otp.issue(PHONE),
    lambda otp: otp.store_otp(PHONE, "123456"),
    lambda otp: otp.verify_otp(PHONE, "123456"),
    lambda otp: otp.check(PHONE, "123456"),
    lambda otp: otp.check("not a phone", "x"),  # the key is checked before the input
])
def test_without_secret_key_every_use_says_how_to_set_one(make_app, memory_url, use,
                                                          caplog):
    caplog.set_level(logging.WARNING, "flask_core_redis")
    app, ext = make_app({"REDIS_URL": memory_url, "SECRET_KEY": None})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "one-time passwords are unavailable" in warnings[0]
    with app.app_context():
        with pytest.raises(ConfigurationError, match=r"SECRET_KEY is not set\. Set "
                                                     r"app\.config\['SECRET_KEY'\]"):
            use(ext.otp)
        assert ext.client.dbsize() == 0  # nothing was stored under a missing key


def test_without_secret_key_and_with_otp_disabled_nothing_is_said(make_app, memory_url,
                                                                  caplog):
    caplog.set_level(logging.WARNING, "flask_core_redis")
    make_app({"REDIS_URL": memory_url, "SECRET_KEY": None, "REDIS_DISABLED_PLUGINS": "otp"})
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_secret_key_set_after_init_app_is_used(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "SECRET_KEY": None})
    app.config["SECRET_KEY"] = "set-by-a-later-config-step"
    with app.app_context():
        code = ext.otp.issue(PHONE)
        assert ext.otp.verify_otp(PHONE, code) is True


@pytest.mark.parametrize("key", ["REDIS_OTP_TTL", "REDIS_OTP_SEND_WINDOW",
                                 "REDIS_CACHE_DEFAULT_TTL", "REDIS_PRESENCE_TTL"])
def test_a_ttl_key_beyond_what_any_call_accepts_fails_at_init_app(make_app, memory_url, key):
    with pytest.raises(ConfigurationError, match=rf"{key}=4000000000 is invalid: expected an "
                                                 r"integer >= \d and <= 3153600000"):
        make_app({"REDIS_URL": memory_url, key: 4_000_000_000})


def test_redis_down_fails_closed(make_app):
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0})
    with app.app_context(), pytest.raises(OtpUnavailable, match="OTP store is unavailable"):
        ext.otp.verify_otp(PHONE, "123456")


def otp_view_app(make_app, **config):
    """An app with Redis down: one view lets OtpUnavailable escape, the other
    redis-py's ConnectionError."""
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0,
                         **config})

    @app.post("/login/verify")
    def verify():
        return {"ok": ext.otp.verify_otp(PHONE, "123456")}

    @app.get("/counter")
    def counter():
        return {"n": ext.client.incr("n")}

    return app


def test_an_otp_outage_in_a_view_is_the_redis_outage_503(make_app, caplog):
    client = otp_view_app(make_app, REDIS_ERROR_HANDLER=True).test_client()
    response = client.post("/login/verify")
    assert response.status_code == 503
    assert response.get_json()["error"] == "redis_unavailable"
    assert response.data == client.get("/counter").data  # the same body as redis-py's
    assert "OtpUnavailable: the OTP store is unavailable" in caplog.text


def test_without_the_error_handler_an_otp_outage_propagates(make_app):
    app = otp_view_app(make_app)
    with pytest.raises(OtpUnavailable) as caught:
        app.test_client().post("/login/verify")
    assert isinstance(caught.value, RedisUnavailable)
