"""The value helpers and configuration parsers shared by the core and plugins,
over whole spaces of inputs."""

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_core_redis import ConfigurationError, InvalidValue, Key, as_text, parsers, ttl_ms
from flask_core_redis.config import config_source
from flask_core_redis.values import MAX_TTL_SECONDS

ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                     st.floats(allow_nan=True, allow_infinity=True), st.binary())


@given(ANYTHING)
def test_ttl_ms_gives_whole_positive_milliseconds_or_a_value_error_naming_it(ttl):
    try:
        milliseconds = ttl_ms(ttl, "lifetime")
    except ValueError as error:
        assert str(error).startswith("lifetime must be a positive number of seconds")
        assert isinstance(ttl, bool) or not isinstance(ttl, int | float) or math.isnan(ttl) \
            or not 0.001 <= ttl <= MAX_TTL_SECONDS
    else:
        assert type(milliseconds) is int and 1 <= milliseconds <= MAX_TTL_SECONDS * 1000
        assert milliseconds == round(ttl * 1000)


@pytest.mark.parametrize("ttl", [0, -1, 0.0004, True, "60", math.inf, math.nan, 10**400])
def test_ttl_ms_refuses(ttl):
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        ttl_ms(ttl)


@given(st.binary())
def test_as_text_reads_any_bytes(raw):
    text = as_text(raw)
    assert isinstance(text, str)
    if raw.isascii() and b"\\" not in raw:
        assert text == raw.decode()


@given(st.text())
def test_as_text_keeps_text(text):
    assert as_text(text) is text
    assert as_text(text.encode()) == text


@given(value=st.one_of(st.integers(), st.text(), st.floats(), st.booleans(), st.none()),
       low=st.integers(-5, 5), span=st.none() | st.integers(0, 10))
def test_integer_parses_whole_numbers_in_range_or_says_what_is_expected(value, low, span):
    high = None if span is None else low + span
    parse = parsers.integer(low, high)
    try:
        number = parse(value)
    except InvalidValue as error:
        assert str(error).startswith(f"expected an integer >= {low}")
    else:
        assert type(number) is int and number >= low and (high is None or number <= high)
        assert number == int(str(value).strip())


@given(st.integers(0, 10**6))
def test_integer_reads_back_what_it_is_given_as_text(number):
    assert parsers.integer(0)(f" {number} ") == number


@given(st.text())
def test_integer_text_is_ascii_digits_with_an_optional_minus(text):
    try:
        parsers.integer(-(10**9))(text)
    except InvalidValue:
        assert not re.fullmatch(r"-?[0-9]+", text.strip()) or int(text) < -(10**9)
    else:
        assert re.fullmatch(r"-?[0-9]+", text.strip())


@given(ANYTHING)
def test_boolean_accepts_the_words_and_nothing_else(value):
    try:
        parsed = parsers.boolean(value)
    except InvalidValue:
        assert str(value).strip().lower() not in parsers.TRUE_WORDS | parsers.FALSE_WORDS
    else:
        assert parsed is (value is True or str(value).strip().lower() in parsers.TRUE_WORDS)


@given(st.one_of(ANYTHING, st.integers(min_value=10**300, max_value=10**400)))
def test_number_is_finite_and_within_its_bounds(value):
    try:
        parsed = parsers.number(0, 1)(value)
    except InvalidValue as error:
        assert "above 0 and at most 1" in str(error)
    else:
        assert 0 < parsed <= 1 and not isinstance(value, bool)


SECRET = Key("API_TOKEN", None, int, "A plugin's secret, parsed by a plain function.",
             secret=True)


@given(st.text(min_size=4).filter(lambda text: text.strip() and not text.strip().isdigit()))
def test_a_secret_keys_bad_value_never_appears_in_the_error(token):
    source = config_source("APP", {"APP_API_TOKEN": token}, {}, {})
    with pytest.raises(ConfigurationError) as caught:
        source.get(SECRET)
    # The whole message, not "token not in message": a token such as " not"
    # is in the fixed text without having leaked.
    assert str(caught.value) == "APP_API_TOKEN=*** is invalid: not accepted"


def test_a_plugins_parser_error_names_the_key_and_the_value():
    key = Key("VISITS_TTL", 60, parsers.integer(1), "Visits: seconds a counter lives.")
    with pytest.raises(ConfigurationError, match=r"^SHOP_VISITS_TTL='soon' is invalid: "
                                                 r"expected an integer >= 1, in ASCII digits$"):
        config_source("SHOP", {}, {"SHOP_VISITS_TTL": "soon"}, {}).get(key)
    assert config_source("SHOP", {}, {}, {"SHOP_VISITS_TTL": "90"}).get(key) == 90
    assert config_source("SHOP", {}, {}, {}).get(key) == 60


@pytest.mark.parametrize("value", [" a, ,b ", ["a", " b", ""], ("a", "b"), "a,b,"])
def test_names_take_a_list_or_names_separated_by_commas(value):
    assert parsers.names(value) == ("a", "b")


def test_names_of_a_set_are_its_names():
    assert sorted(parsers.names(frozenset({"shop", "users"}))) == ["shop", "users"]
