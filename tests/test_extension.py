import logging

import pytest
import redis
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from flask_core_redis import ConfigurationError, CoreRedis
from flask_core_redis.connection.options import any_mode_options
from flask_core_redis.plugin_api.manager import available_plugins
from flask_core_redis.state import registered_states


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
    with pytest.raises(TypeError, match=r"does not take 'retry': set REDIS_MAX_RETRIES"):
        CoreRedis(retry=None)
    with pytest.raises(TypeError, match=r"does not take 'connection_class': the extension "
                                        r"builds it from REDIS_\* configuration"):
        CoreRedis(connection_class=None)


@pytest.mark.parametrize("option", ["nodes_flag", "unix_socket_path", "queue_class"])
def test_cluster_keywords_its_node_connections_cannot_take_are_refused(option):
    with pytest.raises(TypeError, match=rf"unknown option '{option}': no client this "
                                        "extension builds takes it"):
        CoreRedis(**{option: 1})


@pytest.mark.parametrize(("typo", "meant"), [
    ("confg_prefix", "config_prefix"), ("socket_keepalve", "socket_keepalive"),
    ("socket_keep_alive", "socket_keepalive"), ("defaulturl", "default_url")])
def test_a_misspelt_option_fails_at_construction_naming_the_closest(typo, meant):
    with pytest.raises(TypeError, match=rf"unknown option '{typo}': no client this extension "
                                        rf"builds takes it; did you mean '{meant}'\?"):
        CoreRedis(**{typo: 1})


@pytest.mark.parametrize(("option", "key"), [
    ("db", "REDIS_DB"), ("password", "REDIS_PASSWORD"), ("ssl_ca_certs", "REDIS_SSL_CA_CERTS"),
    ("socket_timeout", "REDIS_SOCKET_TIMEOUT"), ("decode_responses", "REDIS_DECODE_RESPONSES"),
    ("ssl_check_hostname", "REDIS_SSL_CERT_REQS"), ("host", "REDIS_URL"),
    ("max_connections", "REDIS_MAX_CONNECTIONS"),
    # Each would change which errors the retry policy retries, or how often.
    ("retry_on_error", "REDIS_MAX_RETRIES"), ("retry_on_timeout", "REDIS_MAX_RETRIES"),
    ("cluster_error_retry_attempts", "REDIS_MAX_RETRIES")])
def test_an_option_that_configuration_sets_names_its_key(option, key):
    with pytest.raises(TypeError, match=rf"does not take '{option}': set {key} instead"):
        CoreRedis(**{option: 1})


@pytest.mark.parametrize(("url", "option"), [
    ("memory://", "read_from_replicas"),         # Cluster only
    ("redis://127.0.0.1:1", "ssl_ciphers"),      # TLS only
    ("redis://127.0.0.1:1", "require_full_coverage"),
    ("redis://127.0.0.1:1", "check_connection"),  # Sentinel only
    ("redis+cluster://127.0.0.1:1", "socket_type"),  # RedisCluster would drop it
    ("redis+cluster://127.0.0.1:1", "ssl_password"),  # TLS only
    # RedisCluster would drop it (and ssl_ciphers before redis-py 8.2).
    ("rediss+cluster://127.0.0.1:1", "parser_class"),
    ("redis+sentinel://127.0.0.1:1/m", "ssl_ciphers"),  # TLS only
])
def test_an_option_the_modes_client_does_not_take_fails_at_init_app(make_app, url, option):
    with pytest.raises(TypeError, match=rf"unknown option '{option}': the \w+ client does "
                                        "not take it"):
        make_app({"REDIS_URL": url}, **{option: True})


@pytest.mark.parametrize(("url", "options"), [
    ("memory://", {"socket_keepalive": True}),
    ("redis://127.0.0.1:1", {"socket_keepalive": True, "socket_keepalive_options": {}}),
    ("rediss://127.0.0.1:1", {"ssl_ciphers": "HIGH"}),
    ("unix:///tmp/nowhere.sock", {"socket_read_size": 65536}),
    ("redis+sentinel://127.0.0.1:1/m", {"socket_keepalive": True, "check_connection": True}),
    ("rediss+sentinel://127.0.0.1:1/m", {"ssl_ciphers": "HIGH", "check_connection": True}),
    ("rediss+cluster://127.0.0.1:1", {"ssl_password": "key-passphrase"}),
    ("redis://127.0.0.1:1", {"protocol": 3, "cache_config": None}),
    ("redis+cluster://127.0.0.1:1", {"read_from_replicas": True, "socket_keepalive": True}),
])
def test_valid_pool_and_socket_options_pass(make_app, url, options):
    make_app({"REDIS_URL": url}, **options)


@given(name=st.from_regex(r"[a-z][a-z_]{0,24}", fullmatch=True))
def test_an_option_passes_construction_exactly_when_some_client_takes_it(name):
    try:
        CoreRedis(**{name: None})
    except TypeError as error:
        assert name not in any_mode_options() and repr(name) in str(error)
    else:
        assert name in any_mode_options() or name in {"app", "config_prefix", "default_url"}


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


@pytest.mark.parametrize("server", ["memory", pytest.param("real", marks=pytest.mark.integration)])
def test_an_app_with_only_a_redis_url_serves_requests_and_the_cli(request, server, key):
    url = f"memory://{key}"
    if server == "real":
        url = f"redis://{request.getfixturevalue('redis_server').address}"
    app = Flask("bare")  # no SECRET_KEY, no other key
    app.config["REDIS_URL"] = url
    ext = CoreRedis(app)

    @app.get("/hits")
    def hits():
        return {"hits": ext.client.incr(key)}

    assert app.test_client().get("/hits").get_json() == {"hits": 1}
    runner = app.test_cli_runner()
    outputs = {}
    for command in ("ping", "keys", "health"):
        result = runner.invoke(args=["redis", command, *([key] if command == "keys" else [])])
        assert result.exit_code == 0, (command, result.output)
        outputs[command] = result.output
    assert outputs["ping"].startswith("PONG") and outputs["keys"] == f"{key}\n"
    with app.app_context():
        with pytest.raises(ConfigurationError, match=r"SECRET_KEY is not set"):
            ext.otp.issue("+15550109988")
        ext.close()


def test_default_url_is_used_only_when_no_key_names_a_server(make_app, memory_url,
                                                             monkeypatch):
    app, ext = make_app({}, default_url=memory_url)
    with app.app_context():
        assert ext.settings.address == memory_url
    app, ext = make_app({"REDIS_PORT": 6380}, default_url=memory_url)
    with app.app_context():
        assert ext.settings.address == "redis:6380"
    monkeypatch.setenv("REDIS_SENTINELS", "s1:26379")
    app, ext = make_app({}, default_url=memory_url)
    with app.app_context():
        assert ext.settings.mode == "sentinel"


def test_a_malformed_default_url_fails_at_construction():
    with pytest.raises(ConfigurationError, match=r"CoreRedis\(default_url='redis://:\*\*\*@h"
                                                 r":99999'\) is invalid: port '99999'"):
        CoreRedis(default_url="redis://:hunter2@h:99999")


def test_a_plugins_fail_fast_client_bounds_every_read(make_app):
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_CONNECT_TIMEOUT": 700})
    timed, timed_ext = make_app({"REDIS_URL": "redis://127.0.0.1:1",
                                 "REDIS_SOCKET_TIMEOUT": 300})
    with app.app_context():
        context = ext.plugins["presence"].context
        fast = context.fail_fast_client()
        assert fast is not ext.client and fast is context.fail_fast_client()
        assert fast.connection_pool.connection_kwargs["socket_timeout"] == 0.7
        assert ext.client.connection_pool.connection_kwargs["socket_timeout"] is None
    with timed.app_context():
        assert timed_ext.plugins["presence"].context.fail_fast_client() is timed_ext.client


def test_tls_options_go_to_tls_sentinels_in_front_of_plain_data_nodes(make_app):
    """ssl_password is accepted when only the sentinels speak TLS, and the
    plain data connections are not handed it (they would refuse it)."""
    app, ext = make_app({"REDIS_URL": "redis+sentinel://127.0.0.1:1/m",
                         "REDIS_SENTINEL_SSL": True}, ssl_password="key-passphrase")
    with app.app_context():
        pool = ext.client.connection_pool
        assert "ssl_password" not in pool.connection_kwargs
        pool.make_connection()  # a plain connection, built without a TypeError


def test_a_tls_option_the_sentinels_connections_cannot_take_is_refused_by_name(make_app):
    """OCSP options reach the data nodes' connections; the watch reaches the
    sentinels with redis-py's asyncio connections, which have no OCSP: an
    error that names the option, not a lookup that fails on every sentinel."""
    app, ext = make_app({"REDIS_URL": "rediss+sentinel://127.0.0.1:1/m"},
                        ssl_validate_ocsp=True)
    with app.app_context(), pytest.raises(TypeError, match="ssl_validate_ocsp cannot reach "
                                                           "the sentinels"):
        ext.client.ping()
