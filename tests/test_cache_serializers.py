"""What the cache stores: any serializer's bytes, and one JSON with or without
orjson."""

import datetime
import enum
import importlib.util
import json
import logging
from importlib.metadata import EntryPoint

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.client import NEVER_DECODE

from flask_core_redis import hookimpl
from flask_core_redis.plugin_api import manager
from flask_core_redis.plugins.cache import serializers

from .servers import IN_CI, TEST_INSTALL
from .test_cache_keys import tagged


class Color(enum.Enum):
    RED = "red"


class Text(str):
    pass


def nested(depth):
    """``depth`` lists, one inside the other."""
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


def looping():
    value = []
    value.append(value)
    return value


def as_json(value):
    """``value`` as JSON gives it back: tuples become lists."""
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    return value


@pytest.fixture
def cache(make_app, memory_url):
    """What JSON accepts does not depend on the topology: the embedded server."""
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        yield ext.cache


class BinarySerializer:
    """Bytes that are not UTF-8, as msgpack and other binary formats write."""

    MARK = b"\xff\xfe\x00"

    def dumps(self, value):
        return self.MARK + json.dumps(value).encode("utf-16-le")

    def loads(self, data):
        assert isinstance(data, bytes)
        return json.loads(data.removeprefix(self.MARK).decode("utf-16-le"))


class BinarySerializerPlugin:
    @hookimpl
    def core_redis_serializer(self):
        return BinarySerializer()


def entry_pattern(ext, key, namespace="default"):
    return f"{ext.settings.key_prefix}{{cache:{namespace}}}:{key}"


@pytest.fixture
def binary_serializer_installed(monkeypatch):
    installed = manager.plugin_entry_points()
    extra = EntryPoint("binary", f"{__name__}:BinarySerializerPlugin", manager.ENTRY_POINT_GROUP)
    monkeypatch.setattr(manager, "plugin_entry_points", lambda: [*installed, extra])


@pytest.mark.parametrize("decode", ["true", "false"])
def test_a_serializer_writing_bytes_that_are_not_utf8_works(
        binary_serializer_installed, mode_app, decode):
    app, ext = mode_app({"REDIS_DECODE_RESPONSES": decode, "REDIS_PLUGINS": "binary,cache"})
    value = {"name": "Zoë", "tags": [1, 2]}
    with app.app_context():
        ext.cache.set("k", value)
        assert ext.cache.get("k") == value
        assert ext.cache.get_many(["k", "missing"]) == {"k": value}
        assert ext.cache.get_or_set("k", lambda: "recomputed") == value
        assert ext.cache.get_or_set("new", lambda: [3]) == [3]
        assert ext.cache.get("new") == [3]
        (key,) = list(ext.client.scan_iter(match=entry_pattern(ext, "k")))
        raw = ext.client.execute_command("GET", key, **{NEVER_DECODE: True})
    assert BinarySerializer.MARK in raw


class MarkedSerializer:
    """Reads only what it wrote, and says what it was given when it cannot."""

    MARK = b"marked:"

    def dumps(self, value):
        return self.MARK + json.dumps(value).encode()

    def loads(self, data):
        if not data.startswith(self.MARK):
            raise ValueError(f"not written by MarkedSerializer: {data!r}")
        return json.loads(data.removeprefix(self.MARK))


class MarkedSerializerPlugin:
    @hookimpl
    def core_redis_serializer(self):
        return MarkedSerializer()


def test_entries_of_a_previous_serializer_are_misses_and_get_recomputed(
        monkeypatch, make_app, memory_url, caplog):
    """A deployment that changes the serializer finds the old one's entries:
    each is a miss until it is overwritten, not an error for its whole TTL."""
    caplog.set_level(logging.INFO, "flask_core_redis")
    installed = manager.plugin_entry_points()
    extra = EntryPoint("marked", f"{__name__}:MarkedSerializerPlugin", manager.ENTRY_POINT_GROUP)
    monkeypatch.setattr(manager, "plugin_entry_points", lambda: [*installed, extra])
    shared = {"REDIS_URL": memory_url, "REDIS_KEY_PREFIX": "shop:"}
    before, before_ext = make_app({**shared, "REDIS_PLUGINS": "cache"})  # JSON
    after, after_ext = make_app({**shared, "REDIS_PLUGINS": "marked,cache"})
    with before.app_context():
        before_ext.cache.set_many({"a": "card no. PAN-4111", "b": "card no. PAN-4222"})
        assert before_ext.cache.get("a") == "card no. PAN-4111"
    with after.app_context():
        cache = after_ext.cache
        assert cache.get("a", "miss") == "miss"
        assert cache.get_many(["a", "b"]) == {}
        assert cache.get_or_set("a", lambda: "recomputed") == "recomputed"
        assert cache.get("a") == "recomputed"
        assert cache.get_or_set("b", lambda: "recomputed too") == "recomputed too"
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "MarkedSerializer.loads cannot read (ValueError) is a miss" in warnings[0]
    assert "PAN-4" not in caplog.text  # no value in the log (a port may hold 4111)


def test_text_that_is_not_ascii_comes_back_whatever_decode_responses_says(mode_app):
    for decode in ("true", "false"):
        app, ext = mode_app({"REDIS_DECODE_RESPONSES": decode})
        with app.app_context():
            ext.cache.set("k", {"ключ": "值 ✓ 🎉"})
            assert ext.cache.get("k") == {"ключ": "值 ✓ 🎉"}


def test_a_value_the_cache_did_not_write_is_a_miss(mode_app):
    app, ext = mode_app()
    with app.app_context():
        ext.cache.set("k", 1)
        (key,) = list(ext.client.scan_iter(match=entry_pattern(ext, "k")))
        # An entry's times are whole milliseconds in digits: "1.5" and "2e3" are
        # numbers, not the cache's (they were read as an entry, hits for get).
        for foreign in ("plain text", "0:x:y:1", "0:1.5:2e3:1", "0: 1:2:1", b"\xff\xfe"):
            ext.client.set(key, foreign)
            assert ext.cache.get("k", "miss") == "miss"
            assert ext.cache.get_or_set("k", lambda: "computed") == "computed"


# One JSON ------------------------------------------------------------------

@pytest.mark.parametrize(("value", "error", "message"), [
    (float("nan"), ValueError, r"value is nan, which JSON has no form for"),
    ({"a": [1, float("-inf")]}, ValueError, r"value\['a'\]\[1\] is -inf"),
    ({1: "a"}, TypeError, r"value has the key 1 \(int\); JSON object keys are str"),
    ([datetime.date(2024, 5, 1)], TypeError, r"value\[0\] is a date, which is not JSON-ser"),
    (Color.RED, TypeError, r"value is a Color"),
    (Text("subclass"), TypeError, r"value is a Text"),
    ({"k": 2**64}, ValueError, r"value\['k'\] is 18446744073709551616, beyond the 64-bit"),
    (["\ud800"], ValueError, r"value\[0\] contains a lone surrogate"),
    (nested(255), ValueError, r"nests containers deeper than 254 levels"),  # orjson's limit
    (looping(), ValueError, r"nests containers deeper"),
])
def test_what_the_two_json_encoders_disagree_on_is_refused(cache, value, error, message):
    with pytest.raises(error, match=message):
        cache.set("k", value)
    assert cache.get("k") is None


def test_every_accepted_value_comes_back_the_same(cache):
    value = {"a": [1, -0.0, 1e16, 2**64 - 1, -(2**63), None, True, "ü ✓"], "t": (1, "x"),
             "deep": nested(253)}  # with the dict around it: 254 levels
    cache.set("k", value)
    assert tagged(cache.get("k")) == tagged(as_json(value))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    | st.sampled_from(["\ud800", 2**64 - 1, 2**64, -(2**63) - 1, Color.RED, Text("t"),
                       float("nan"), float("inf"), -0.0, 1e16, 5e-324])
    | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text() | st.integers() | st.sampled_from([Text("k"), None]), inner,
                      max_size=3),
    max_leaves=12)


def outcome_of(serializer, value):
    try:
        data = serializer.dumps(value)
    except (TypeError, ValueError) as error:
        return type(error)
    return tagged(serializer.loads(data if isinstance(data, bytes) else data.encode()))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_standard_library_gives_back_what_it_accepts(value):
    result = outcome_of(serializers.JsonSerializer(use_orjson=False), value)
    if not isinstance(result, type):
        assert result == tagged(as_json(value))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_orjson_accepts_and_gives_back_what_the_standard_library_does(value):
    if importlib.util.find_spec("orjson") is None:  # the orjson extra, installed for the tests
        message = f"orjson is not installed ({TEST_INSTALL})"
        if IN_CI:
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)
    assert outcome_of(serializers.JsonSerializer(use_orjson=True), value) == outcome_of(
        serializers.JsonSerializer(use_orjson=False), value)
