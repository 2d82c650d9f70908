"""The OTP plugin's async forms (aissue, astore_otp, acheck, averify_otp):
the same scripts, limits and failures as the sync forms, on memory, one
server and Cluster."""

import asyncio

import pytest

from flask_core_redis import ConfigurationError
from flask_core_redis.plugins.otp import OtpCheck, OtpRateLimited, OtpUnavailable
from flask_core_redis.plugins.otp.scripts import CHECK, ISSUE

from . import test_otp
from .test_otp import NUMBER, PHONE, sends_to

#: test_otp's fixtures; ``otp`` on the embedded server (see ``mode``).
otp, otp_app, lossy_otp = test_otp.otp, test_otp.otp_app, test_otp.lossy_otp


@pytest.fixture
def mode():
    """The unit tests here run on the embedded server (test_otp's fixtures)."""
    return "memory"


def test_an_async_caller_issues_and_verifies_a_code_once(otp):
    async def login():
        code = await otp.aissue(PHONE)
        return code, await otp.averify_otp(PHONE, code), await otp.averify_otp(PHONE, code)

    code, first, second = asyncio.run(login())
    assert len(code) == 6 and code.isdigit()
    assert (first, second) == (True, False)


def test_sync_and_async_callers_share_one_code_and_its_attempts(otp):
    async def wrong_twice():
        return [await otp.acheck(PHONE, "000000") for _ in range(2)]

    otp.store_otp(PHONE, "123456")
    assert asyncio.run(wrong_twice()) == [OtpCheck("invalid", 4), OtpCheck("invalid", 3)]
    assert otp.check(PHONE, "000000") == OtpCheck("invalid", 2)
    asyncio.run(otp.astore_otp(PHONE, "654321"))
    assert otp.verify_otp(PHONE, "123456") is False  # replaced
    assert otp.verify_otp(PHONE, "654321") is True


def test_an_async_caller_meets_the_send_limits(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_OTP_RESEND_COOLDOWN": 60})
    with app.app_context():
        ext.otp.issue(PHONE)
        with pytest.raises(OtpRateLimited) as caught:
            asyncio.run(ext.otp.aissue("1 555 010 9988"))  # one number, another spelling
    assert caught.value.reason == "cooldown"


@pytest.mark.parametrize(("call", "error"), [
    (lambda otp: otp.acheck("12", "123456"), ValueError),
    (lambda otp: otp.averify_otp(PHONE, "12"), ValueError),
    (lambda otp: otp.astore_otp(PHONE, "12ab56"), ValueError),
])
def test_async_forms_refuse_bad_input_as_the_sync_ones_do(otp, call, error):
    with pytest.raises(error, match="invalid"):
        asyncio.run(call(otp))


def test_without_secret_key_async_forms_say_how_to_set_one(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "SECRET_KEY": None})
    with app.app_context(), pytest.raises(ConfigurationError, match="SECRET_KEY"):
        asyncio.run(ext.otp.averify_otp(PHONE, "123456"))


def test_averify_otp_fails_closed_when_redis_is_down(make_app):
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0})
    with app.app_context(), pytest.raises(OtpUnavailable, match="OTP store is unavailable"):
        asyncio.run(ext.otp.averify_otp(PHONE, "123456"))


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["standalone", "cluster"])
def test_concurrent_async_verifications_succeed_exactly_once(mode_app):
    """Twenty tasks verify one right code at once, after a wrong one: one
    success, on one server and on a Cluster."""
    app, ext = mode_app({"REDIS_OTP_RESEND_COOLDOWN": 0})

    async def race(code):
        # One call first: redis-py's asyncio cluster client with a socket
        # timeout breaks connections when its first calls come at once.
        assert await ext.otp.acheck(PHONE, "000000") == OtpCheck("invalid", 4)
        return await asyncio.gather(*[ext.otp.averify_otp(PHONE, code) for _ in range(20)])

    with app.app_context():
        ext.otp.store_otp(PHONE, "123456")
        assert sorted(asyncio.run(race("123456"))) == [False] * 19 + [True]


@pytest.mark.integration
def test_async_calls_whose_replies_are_lost_each_run_once(lossy_otp):
    """Each reply is lost after the script ran; the retry policy sends the
    script again and gets the first run's reply: the issue uses one send (and
    gives the code it stored), the wrong code one attempt, and the right code
    verifies, once."""
    proxy, otp, server = lossy_otp
    otp.issue("+15550000001")  # the scripts are loaded
    otp.check("+15550000001", "000000")
    proxy.lose_reply_to(ISSUE.sha)
    code = asyncio.run(otp.aissue(PHONE))
    proxy.lose_reply_to(CHECK.sha)
    wrong = f"{999_999 - int(code):06d}"  # never the code itself
    assert asyncio.run(otp.acheck(PHONE, wrong)) == OtpCheck("invalid", 4)
    proxy.lose_reply_to(CHECK.sha)
    assert asyncio.run(otp.averify_otp(PHONE, code)) is True
    assert proxy.replies_lost == 3
    assert sends_to(server, NUMBER) == 1
    assert otp.verify_otp(PHONE, code) is False  # used up
    with pytest.raises(OtpRateLimited, match="try again in"):  # the one cooldown
        otp.issue(PHONE)
