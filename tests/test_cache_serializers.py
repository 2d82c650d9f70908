"""What the cache stores: any serializer's bytes, and one JSON with or without
orjson."""

import json
from importlib.metadata import EntryPoint

import pytest
from redis.client import NEVER_DECODE

from flask_core_redis import hookimpl
from flask_core_redis.plugin_api import manager


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
    return f"{{{ext.settings.key_prefix}cache:{namespace}}}:{key}"


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
        for foreign in ("plain text", "0:x:y:1", b"\xff\xfe"):
            ext.client.set(key, foreign)
            assert ext.cache.get("k", "miss") == "miss"
            assert ext.cache.get_or_set("k", lambda: "computed") == "computed"
