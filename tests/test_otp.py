"""The OTP plugin, on memory, standalone, Sentinel and Cluster."""

import logging
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_core_redis import ConfigurationError, RedisUnavailable
from flask_core_redis.plugins.otp import (
    OtpCheck,
    OtpRateLimited,
    OtpUnavailable,
    normalize_code,
    normalize_phone,
)
from flask_core_redis.plugins.otp.scripts import CHECK, ISSUE

from .servers import run_concurrently, wait_until
from .tcp_proxy import FaultProxy

PHONE = "+1 (555) 010-99 88"
NUMBER = "+15550109988"

#: The zero of each script a spelling swaps a digit into.
ZEROS = {"fullwidth": 0xFF10, "Arabic-Indic": 0x0660, "Devanagari": 0x0966}

#: Every Unicode decimal digit, by value.
DECIMALS = {value: [] for value in range(10)}
for _point in range(sys.maxunicode + 1):
    _value = unicodedata.decimal(chr(_point), None)
    if _value is not None:
        DECIMALS[_value].append(chr(_point))


def in_script(text, zero):
    """``text`` with each ASCII digit written in the script whose zero is ``zero``."""
    return "".join(chr(zero + int(char)) if char.isdigit() else char for char in text)


def swapped_spellings(number):
    """``number`` with and without its ``+``, each with one digit written in
    another script: fullwidth, Arabic-Indic or Devanagari."""
    digits = number.lstrip("+")
    spellings = []
    for plus in ("+", ""):
        for index in range(len(digits)):
            for zero in ZEROS.values():
                swapped = digits[:index] + in_script(digits[index], zero) + digits[index + 1:]
                spellings.append(plus + swapped)
    return spellings


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
        keys = list(ext.client.scan_iter(match=f"{prefix}{{otp*"))
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


def answers(otp, phone, codes):
    """What ``check`` answers for each of ``codes``: an OtpCheck, or the
    ValueError's message."""
    out = []
    for code in codes:
        try:
            out.append(otp.check(phone, code))
        except ValueError as error:
            out.append(str(error))
    return out


def test_unknown_phone_answers_exactly_like_a_wrong_code(otp):
    otp.issue("+15550000001")
    codes = ["1234", "999999", "12345678", "999999", "1234567890"] + ["999999"] * 4
    known = answers(otp, "+15550000001", codes)
    unknown = answers(otp, "+15550000002", codes)
    assert known == unknown
    assert known[0] == "invalid code: expected 6 digits, not 4"
    assert known[-1].status == "locked"


def test_a_code_of_another_length_than_the_stored_one_costs_no_attempt(otp):
    code = otp.issue(PHONE)
    for length in (4, 5, 7, 8, 9, 10):
        with pytest.raises(ValueError, match=rf"^invalid code: expected 6 digits, "
                                             rf"not {length}$"):
            otp.check(PHONE, code[:1] * length)
    wrong = "000000" if code != "000000" else "111111"
    assert otp.check(PHONE, wrong) == OtpCheck("invalid", 4)
    otp.store_otp(PHONE, "1234")
    with pytest.raises(ValueError, match="expected 4 digits, not 6"):
        otp.verify_otp(PHONE, code)
    assert otp.check(PHONE, "4321") == OtpCheck("invalid", 4)
    assert otp.verify_otp(PHONE, "1234") is True


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
    ("+1 (555) 010-99 88", "+15550109988"), ("8 800 555.35.35", "+88005553535"),
    ("1 555 010 99 88", "+15550109988"),
    ("+447911123456", "+447911123456"),
    (in_script("+1 555 010 99 88", ZEROS["fullwidth"]), "+15550109988"),
    (in_script("+44 7911 123456", ZEROS["Arabic-Indic"]), "+447911123456"),
    (in_script("8 800 555 35 35", ZEROS["Devanagari"]), "+88005553535")])
def test_phone_numbers_are_normalised(phone, normalised):
    assert normalize_phone(phone) == normalised


def test_every_spelling_of_a_number_shares_its_cooldown_and_send_count(mode_app):
    app, ext = mode_app({"REDIS_OTP_RESEND_COOLDOWN": 60})
    spellings = swapped_spellings(NUMBER)
    assert len(set(spellings)) == 66
    with app.app_context():
        ext.otp.issue(NUMBER)
        for spelling in spellings:
            with pytest.raises(OtpRateLimited) as caught:
                ext.otp.issue(spelling)
            assert caught.value.reason == "cooldown", spelling
        sends = [key for key in ext.client.scan_iter(match=f"{ext.settings.key_prefix}{{otp*")
                 if key.endswith(":sends")]
        assert [ext.client.zcard(key) for key in sends] == [1]


def test_spellings_of_a_number_share_its_code_and_attempts(otp):
    otp.store_otp(NUMBER, "123456")
    first, second, third = (in_script(NUMBER, zero) for zero in ZEROS.values())
    assert otp.check(first, "000000") == OtpCheck("invalid", 4)
    assert otp.check(second, "000000") == OtpCheck("invalid", 3)
    assert otp.verify_otp(third, "123456") is True


def test_a_number_with_and_without_its_plus_is_one_identity(mode_app):
    app, ext = mode_app({"REDIS_OTP_RESEND_COOLDOWN": 60})
    without_plus = "1 555 010 9988"
    with app.app_context():
        code = ext.otp.issue(PHONE)
        with pytest.raises(OtpRateLimited, match="try again in"):
            ext.otp.issue(without_plus)
        # The code is shared too: the right code typed under the other
        # spelling verifies, and is then used up for both.
        assert ext.otp.verify_otp(without_plus, code) is True
        assert ext.otp.check(PHONE, code) == OtpCheck("invalid", 4)
        assert ext.otp.check(without_plus, code) == OtpCheck("invalid", 3)


NUMBERS = st.from_regex(r"\+?[0-9]{7,15}", fullmatch=True)
CODES = st.from_regex(r"[0-9]{4,10}", fullmatch=True)
NOISE = st.sampled_from([" ", "-", ".", "(", ")", "\u00a0", "\u3000", "\t"])


@st.composite
def spelled(draw, text, noise=True):
    """``text`` with each digit in any script, and noise between characters."""
    def some_noise():
        return draw(st.lists(NOISE, max_size=2)) if noise else []

    out = []
    for char in text:
        out += some_noise()
        out.append(draw(st.sampled_from(DECIMALS[int(char)])) if char.isdigit() else char)
    return "".join(out + some_noise())


def neighbours(number):
    """Other numbers, some close to ``number``: the same digits with the ``+``
    toggled, or one digit changed."""
    toggled = number[1:] if number.startswith("+") else "+" + number
    positions = [index for index, char in enumerate(number) if char.isdigit()]
    changed = st.tuples(st.sampled_from(positions), st.integers(1, 9)).map(
        lambda pick: number[:pick[0]] + str((int(number[pick[0]]) + pick[1]) % 10)
        + number[pick[0] + 1:])
    return st.one_of(NUMBERS, st.just(toggled), changed)


@given(st.one_of(st.text(), NUMBERS.flatmap(spelled)))
def test_a_normalised_phone_is_a_plus_and_ascii_digits_and_normalises_to_itself(text):
    try:
        number = normalize_phone(text)
    except ValueError:
        return
    assert number.startswith("+") and number[1:].isascii() and number[1:].isdigit()
    assert normalize_phone(number) == number


@given(NUMBERS.flatmap(lambda number: st.tuples(st.just(number), spelled(number))))
def test_every_spelling_of_a_number_normalises_to_it(pair):
    number, spelling = pair
    assert normalize_phone(spelling) == "+" + number.lstrip("+")


@given(st.data(), NUMBERS.flatmap(lambda number: st.tuples(st.just(number),
                                                            neighbours(number))))
def test_two_spellings_are_one_number_exactly_when_their_digits_are(data, pair):
    one, other = pair
    spelling, other_spelling = data.draw(spelled(one)), data.draw(spelled(other))
    same_digits = one.lstrip("+") == other.lstrip("+")  # the + alone is no other number
    assert (normalize_phone(spelling) == normalize_phone(other_spelling)) is same_digits


@given(CODES.flatmap(lambda code: st.tuples(st.just(code),
                                            spelled(code, noise=False))))
def test_a_code_in_any_script_normalises_to_ascii(pair):
    code, spelling = pair
    assert normalize_code(spelling) == code


@given(st.text())
def test_a_normalised_code_is_ascii_digits_and_normalises_to_itself(text):
    try:
        code = normalize_code(text)
    except ValueError:
        return
    assert code.isascii() and code.isdigit() and normalize_code(code) == code


def test_a_code_typed_in_another_script_verifies(otp):
    for zero in ZEROS.values():
        otp.store_otp(PHONE, "123456")
        assert otp.check(PHONE, in_script("000000", zero)) == OtpCheck("invalid", 4)
        assert otp.verify_otp(PHONE, in_script("123456", zero)) is True
    otp.store_otp(PHONE, in_script("654321", ZEROS["fullwidth"]))
    assert otp.verify_otp(PHONE, "654321") is True


@pytest.mark.parametrize("code", [
    "\u00b9\u00b2\u00b3\u2074\u2075\u2076",  # superscripts: digits, not decimal digits
    "\u2460\u2461\u2462\u2463\u2464\u2465",  # circled
    in_script("123 456", ZEROS["fullwidth"]), in_script("12", ZEROS["Devanagari"]),
    "12345" + in_script("6", ZEROS["fullwidth"]) + "x"])
def test_a_code_that_could_never_match_costs_no_attempt(otp, code):
    otp.store_otp(PHONE, "123456")
    with pytest.raises(ValueError, match="invalid code"):
        otp.check(PHONE, code)
    assert otp.check(PHONE, "000000") == OtpCheck("invalid", 4)


@pytest.mark.parametrize("phone", ["", "abc", "+12", "12345678901234567", "+1 555 CALL NOW",
                                   None, 15550109988,
                                   "\uff0b15550109988",  # the + must be ASCII
                                   "+1555\u00b2109988"])  # a superscript is no decimal digit
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


@pytest.fixture
def lossy_otp(make_app, own_redis_server):
    """OTP through a proxy that can lose a reply, with a 200 ms socket timeout
    and one retry: the reply is lost after the script ran, and the core's retry
    policy sends the script again."""
    with FaultProxy(own_redis_server.port) as proxy:
        app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{proxy.port}",
                             "REDIS_SOCKET_TIMEOUT": 200, "REDIS_MAX_RETRIES": 1,
                             "REDIS_OTP_RESEND_COOLDOWN": 60})
        with app.app_context():
            yield proxy, ext.otp, own_redis_server


def sends_to(server, number):
    """How many sends the number's send window holds, read straight from the server."""
    with server.client() as client:
        keys = [key for key in client.scan_iter(match="*otp*:sends") if number in key]
        return sum(client.zcard(key) for key in keys)


@pytest.mark.integration
def test_a_wrong_code_whose_reply_is_lost_costs_one_attempt(lossy_otp):
    proxy, otp, _ = lossy_otp
    otp.store_otp(PHONE, "123456")
    assert otp.check(PHONE, "000000") == OtpCheck("invalid", 4)  # the script is loaded
    proxy.lose_reply_to(CHECK.sha)
    assert otp.check(PHONE, "000000") == OtpCheck("invalid", 3)
    assert proxy.replies_lost == 1
    assert otp.check(PHONE, "000000") == OtpCheck("invalid", 2)


@pytest.mark.integration
def test_the_right_code_whose_reply_is_lost_still_verifies(lossy_otp):
    proxy, otp, _ = lossy_otp
    otp.store_otp(PHONE, "123456")
    assert otp.check(PHONE, "000000").status == "invalid"  # the script is loaded
    proxy.lose_reply_to(CHECK.sha)
    assert otp.verify_otp(PHONE, "123456") is True
    assert proxy.replies_lost == 1
    assert otp.verify_otp(PHONE, "123456") is False  # used up


@pytest.mark.integration
def test_a_code_issued_with_a_lost_reply_is_the_one_stored_and_costs_one_send(lossy_otp):
    proxy, otp, server = lossy_otp
    otp.issue("+15550000001")  # the script is loaded
    proxy.lose_reply_to(ISSUE.sha)
    code = otp.issue(PHONE)
    assert proxy.replies_lost == 1
    assert sends_to(server, NUMBER) == 1
    with pytest.raises(OtpRateLimited, match="try again in"):  # the one cooldown
        otp.issue(PHONE)
    assert otp.verify_otp(PHONE, code) is True
