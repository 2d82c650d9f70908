import logging

import pytest
import redis
from flask import Flask

from flask_core_redis import ConfigurationError, CoreRedis
from flask_core_redis.plugin_api.manager import available_plugins
from flask_core_redis.state import registered_states

from .servers import run_forked


def test_app_factory_pattern_gives_each_app_its_own_client(make_app, memory_url):
    ext = CoreRedis()
    first, second = Flask("first"), Flask("second")
    first.config["SECRET_KEY"] = second.config["SECRET_KEY"] = "s"
    first.config["REDIS_URL"] = memory_url
    second.config["REDIS_URL"] = memory_url + "-other"
    ext.init_app(first)
    ext.init_app(second)
    with first.app_context():
        ext.client.set("who", "first")
        first_client = ext.get_client()
    with second.app_context():
        assert ext.client.get("who") is None
        assert ext.client is not first_client
    for app in (first, second):
        with app.app_context():
            ext.close()


def test_client_is_shared_within_an_app(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        first = ext.client
    with app.test_request_context():
        assert ext.get_client() is first


def test_responses_are_strings_by_default_and_bytes_on_request(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    raw_app, raw_ext = make_app({"REDIS_URL": memory_url, "REDIS_DECODE_RESPONSES": "false"})
    with app.app_context():
        ext.client.set("k", "v")
        assert ext.client.get("k") == "v"
    with raw_app.app_context():
        assert raw_ext.client.get("k") == b"v"


def test_two_prefixes_on_one_app_have_separate_settings(make_app, memory_url):
    app, main = make_app({"REDIS_URL": memory_url, "CACHE_REDIS_URL": memory_url + "-c"})
    cache = CoreRedis(app, config_prefix="CACHE_REDIS")
    with app.app_context():
        main.client.set("k", "main")
        assert cache.client.get("k") is None
        assert cache.settings.memory_name.endswith("-c")
        cache.close()
    assert set(registered_states(app)) == {"REDIS", "CACHE_REDIS"}


def test_same_prefix_twice_is_refused_with_advice(make_app, memory_url):
    app, _ = make_app({"REDIS_URL": memory_url})
    with pytest.raises(RuntimeError, match=r"already registered.*own config_prefix"):
        CoreRedis(app)


def test_outside_app_context_says_what_to_do(memory_url):
    ext = CoreRedis()
    with pytest.raises(RuntimeError, match=r"outside an application context.*app_context"):
        _ = ext.client


def test_before_init_app_says_what_to_do():
    ext = CoreRedis()
    app = Flask("bare")
    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        ext.get_client()


def test_bad_configuration_fails_at_init_app():
    app = Flask("bad")
    app.config["REDIS_PORT"] = "six"
    with pytest.raises(ConfigurationError, match="REDIS_PORT='six'"):
        CoreRedis(app)


def test_options_built_from_configuration_cannot_be_overridden():
    with pytest.raises(TypeError, match=r"retry.*REDIS_\* configuration"):
        CoreRedis(retry=None)


def test_client_options_reach_the_client(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1"}, socket_keepalive=True)
    with app.app_context():
        kwargs = ext.client.connection_pool.connection_kwargs
    assert kwargs["socket_keepalive"] is True


def test_init_app_does_no_network_io_and_logs_mode_and_address(make_app, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    # Nothing listens on port 1: init_app must still succeed, quietly.
    make_app({"REDIS_URL": "redis://user:pw-not-logged@127.0.0.1:1"})
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0] == ("[REDIS] configured standalone mode at 127.0.0.1:1; plugins: "
                           + ", ".join(sorted(available_plugins())))


def test_unreachable_redis_is_not_replaced_by_memory(make_app):
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0})
    with app.app_context(), pytest.raises(redis.ConnectionError):
        ext.client.set("k", "v")


def test_memory_server_is_shared_by_every_client_of_the_same_url(make_app, memory_url):
    app_a, ext_a = make_app({"REDIS_URL": memory_url})
    app_b, ext_b = make_app({"REDIS_URL": memory_url})
    with app_a.app_context():
        ext_a.client.set("shared", "yes")
        duplicate = ext_a.duplicate()
        assert duplicate.get("shared") == "yes"
    with app_b.app_context():
        assert ext_b.client.get("shared") == "yes"


def test_memory_mode_runs_lua(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        assert ext.client.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, "n", 5) == 5


def test_duplicate_is_independent_and_has_no_read_timeout(make_app):
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_SOCKET_TIMEOUT": 500})
    with app.app_context():
        shared, duplicate = ext.client, ext.duplicate()
    assert duplicate is not shared
    assert duplicate.connection_pool is not shared.connection_pool
    assert shared.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    assert duplicate.connection_pool.connection_kwargs["socket_timeout"] is None
    assert duplicate.connection_pool.connection_kwargs["health_check_interval"] == 30


def test_close_is_idempotent_and_the_next_use_reopens(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        before = ext.client
        ext.close()
        ext.close()
        assert ext.client is not before
        assert ext.client.ping()


def test_reprs_never_show_secrets(make_app):
    app, ext = make_app({"REDIS_URL": "redis://u:hunter2@127.0.0.1:1"})
    with app.app_context():
        shown = [repr(ext), repr(ext.settings), repr(ext.client),
                 repr(registered_states(app)["REDIS"]),
                 repr(ext.client.connection_pool.make_connection())]
    assert not [text for text in shown if "hunter2" in text]


def test_health_reports_down_redis_without_raising(make_app):
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0})
    with app.app_context():
        report = ext.health()
    assert report["ok"] is False
    assert report["mode"] == "standalone"
    assert "ConnectionError" in report["error"]
    assert {"latency_ms", "server_version", "role"} <= report.keys()


def test_health_of_memory_mode(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        report = ext.health()
    assert report["ok"] is True
    assert report["mode"] == "memory"
    assert report["role"] == "master"
    assert report["server_version"].startswith("fakeredis")
    assert report["latency_ms"] >= 0


def test_fork_gives_the_child_its_own_connections(make_app, memory_url):
    """gunicorn --preload forks after the parent may have used the client."""
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        ext.client.set("k", "parent")
        assert run_forked(lambda: ext.client.get("k") == "parent")
        assert ext.client.get("k") == "parent"
