import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_core_redis import CoreRedis, as_text
from flask_core_redis.key_text import key_to_text, text_to_key


@pytest.fixture
def app_and_ext(make_app, memory_url):
    return make_app({"REDIS_URL": memory_url})


def run(app, *args):
    return app.test_cli_runner().invoke(args=["redis", *args])


def test_ping_prints_pong_and_latency(app_and_ext):
    result = run(app_and_ext[0], "ping")
    assert result.exit_code == 0
    assert result.output.startswith("PONG (") and result.output.strip().endswith("ms)")


def test_get_ttl_del_keys_flush_work_on_the_app_redis(app_and_ext):
    app, ext = app_and_ext
    with app.app_context():
        ext.client.set("user:1", "ann", ex=100)
        ext.client.set("user:2", "bob")
        ext.client.set("other", "x")
    assert run(app, "get", "user:1").output == "ann\n"
    assert run(app, "get", "missing").output == "(nil)\n"
    assert 0 < int(run(app, "ttl", "user:1").output.split()[0]) <= 100
    assert run(app, "ttl", "user:2").output == "-1 (no expiry)\n"
    assert run(app, "ttl", "missing").output == "-2 (no such key)\n"
    assert sorted(run(app, "keys", "user:*").output.split()) == ["user:1", "user:2"]
    assert len(run(app, "keys", "*", "--limit", "2").output.split()) == 2
    assert run(app, "del", "user:1", "missing").output == "1\n"
    refused = run(app, "flush")
    assert refused.exit_code != 0 and "without --yes" in refused.output
    with app.app_context():
        assert ext.client.exists("other") == 1
    assert run(app, "flush", "--yes").exit_code == 0
    with app.app_context():
        assert ext.client.dbsize() == 0


def test_flush_clears_only_the_configured_db(make_app, memory_url):
    app0, ext0 = make_app({"REDIS_URL": memory_url + "/0"})
    app1, ext1 = make_app({"REDIS_URL": memory_url + "/1"})
    with app0.app_context():
        ext0.client.set("keep", "me")
    with app1.app_context():
        ext1.client.set("drop", "me")
    assert run(app1, "flush", "--yes").exit_code == 0
    with app0.app_context():
        assert ext0.client.get("keep") == "me"


def test_config_masks_secrets(make_app):
    app, _ = make_app({"REDIS_URL": "redis://u:hunter2@127.0.0.1:1/2"})
    result = run(app, "config")
    assert result.exit_code == 0
    assert "password: ***" in result.output
    assert "db: 2" in result.output
    assert "hunter2" not in result.output


def test_health_prints_json_and_exit_code_follows_ok(app_and_ext, make_app):
    ok = run(app_and_ext[0], "health")
    assert ok.exit_code == 0 and json.loads(ok.output)["ok"] is True
    down_app, _ = make_app({"REDIS_URL": "redis://:hunter2@127.0.0.1:1",
                            "REDIS_MAX_RETRIES": 0})
    down = run(down_app, "health")
    assert down.exit_code == 1
    assert json.loads(down.output)["ok"] is False
    assert "hunter2" not in down.output


def test_failures_are_one_line_without_traceback(make_app):
    app, _ = make_app({"REDIS_URL": "redis://:hunter2@127.0.0.1:1", "REDIS_MAX_RETRIES": 0})
    result = run(app, "ping")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ConnectionError:")
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output and "hunter2" not in result.output


def test_wrong_type_is_reported_not_raised(app_and_ext):
    app, ext = app_and_ext
    with app.app_context():
        ext.client.rpush("a-list", "x")
    result = run(app, "get", "a-list")
    assert result.exit_code == 1 and "WRONGTYPE" in result.output


def test_prefix_option_selects_a_registration(make_app, memory_url):
    app, _ = make_app({"REDIS_URL": memory_url, "CACHE_REDIS_URL": memory_url + "-cache"})
    cache = CoreRedis(app, config_prefix="CACHE_REDIS")
    with app.app_context():
        cache.client.set("only-in-cache", "1")
    result = app.test_cli_runner().invoke(
        args=["redis", "--prefix", "CACHE_REDIS", "get", "only-in-cache"])
    assert result.output == "1\n"
    unknown = app.test_cli_runner().invoke(args=["redis", "--prefix", "NOPE", "ping"])
    assert unknown.exit_code == 1 and "registered: REDIS, CACHE_REDIS" in unknown.output


def test_group_is_also_published_as_a_flask_commands_entry_point():
    from importlib.metadata import entry_points

    from flask_core_redis.cli import redis_group

    (entry,) = [e for e in entry_points(group="flask.commands") if e.name == "redis"]
    assert entry.load() is redis_group


@pytest.mark.parametrize("decode", ["true", "false"])
def test_any_key_lists_as_one_line_that_reads_back(make_app, memory_url, decode):
    app, _ = make_app({"REDIS_URL": memory_url, "REDIS_DECODE_RESPONSES": decode})
    raw, raw_ext = make_app({"REDIS_URL": memory_url, "REDIS_DECODE_RESPONSES": "false"})
    keys = {b"bin:\xff\xfe": b"1", b"multi\nline\nkey": b"2", b"bin:\\xff\\xfe": b"3",
            "text:caf\u00e9".encode(): "cr\u00e8me".encode(), b"binary-value": b"\xff(ok"}
    with raw.app_context():
        for key, value in keys.items():
            raw_ext.client.set(key, value)
    listed = run(app, "keys", "*")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert sorted(lines) == sorted(["bin:\\xff\\xfe", "multi\\x0aline\\x0akey",
                                    "bin:\\\\xff\\\\xfe", "text:caf\u00e9", "binary-value"])
    for key, value in keys.items():  # each printed line reads back as its key
        assert run(app, "get", key_to_text(key)).output == as_text(value) + "\n"
        assert key_to_text(key) in lines
    assert run(app, "get", "binary-value").output == "\\xff(ok\n"
    assert run(app, "del", "multi\\x0aline\\x0akey").output == "1\n"
    bad = run(app, "get", "a\\qb")
    assert bad.exit_code == 1 and "no other escape" in bad.output


@given(st.binary())
def test_a_keys_text_is_one_printable_line_that_reads_back(key):
    text = key_to_text(key)
    assert text.isprintable() and text_to_key(text) == key


def test_an_unexpected_failure_is_one_line(make_app, memory_url, monkeypatch):
    app, _ = make_app({"REDIS_URL": memory_url})
    monkeypatch.setattr("flask_core_redis.cli.as_text", lambda value: 1 / 0)
    with app.app_context():
        app.extensions["core_redis"]["REDIS"].client.set("k", "v")
    result = run(app, "get", "k")
    assert result.exit_code == 1
    assert result.output == "Error: ZeroDivisionError: division by zero\n"
