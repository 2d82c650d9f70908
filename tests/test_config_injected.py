"""The environment a platform injects into every process: Kubernetes for each
Service of the namespace, Docker for each legacy link. A Service or link
named like the prefix (``redis``) sets ``REDIS_PORT=tcp://host:port`` and
variables no key reads (``REDIS_SERVICE_HOST``, ``REDIS_PORT_6379_TCP_ADDR``,
``REDIS_NAME``, ``REDIS_ENV_*``). None of it ever stops an app from starting:
the keys a URL (or SENTINELS, or CLUSTER_NODES) overrides are not read, and a
``tcp://host:port`` in PORT names the server only when nothing else does."""

import logging

import pytest
from flask import Flask
from hypothesis import example, given
from hypothesis import strategies as st

from flask_core_redis import ConfigurationError, CoreRedis
from flask_core_redis.config import load_settings
from flask_core_redis.config.urls import check_host, parse_service_address


def kubernetes_service(name: str, host: str, port: int) -> dict[str, str]:
    """What Kubernetes sets in every pod of a namespace that has a Service
    ``name`` with one TCP port named ``redis``."""
    upper = name.upper().replace("-", "_")
    address = f"tcp://{host}:{port}"
    return {f"{upper}_SERVICE_HOST": host, f"{upper}_SERVICE_PORT": str(port),
            f"{upper}_SERVICE_PORT_REDIS": str(port), f"{upper}_PORT": address,
            f"{upper}_PORT_{port}_TCP": address, f"{upper}_PORT_{port}_TCP_PROTO": "tcp",
            f"{upper}_PORT_{port}_TCP_PORT": str(port),
            f"{upper}_PORT_{port}_TCP_ADDR": host}


def docker_link(alias: str, host: str, port: int) -> dict[str, str]:
    """What Docker sets in a container started with ``--link <container>:alias``:
    the linked container's address and its own environment."""
    upper = alias.upper().replace("-", "_")
    address = f"tcp://{host}:{port}"
    return {f"{upper}_PORT": address, f"{upper}_PORT_{port}_TCP": address,
            f"{upper}_PORT_{port}_TCP_PROTO": "tcp", f"{upper}_PORT_{port}_TCP_PORT": str(port),
            f"{upper}_PORT_{port}_TCP_ADDR": host, f"{upper}_NAME": f"/web/{alias}",
            f"{upper}_ENV_REDIS_VERSION": "7.2.4", f"{upper}_ENV_GOSU_VERSION": "1.17",
            f"{upper}_ENV_REDIS_DOWNLOAD_URL":
                "http://download.redis.io/releases/redis-7.2.4.tar.gz"}


PLATFORMS = {"kubernetes": kubernetes_service, "docker": docker_link}
#: An address nothing listens on: a client that went there would fail.
ELSEWHERE = ("10.96.0.5", 6380)


def inject(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def port_lines(caplog: pytest.LogCaptureFixture, prefix: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if f"{prefix}_PORT" in record.getMessage()]


def assert_writes_reach(server, prefix: str, key: str, make_app) -> None:
    """An app made now writes through ``ext.client`` to ``server``."""
    app, ext = make_app(prefix=prefix)
    with app.app_context():
        ext.client.set(key, prefix)
    with server.client() as admin:
        assert admin.get(key) == prefix
        admin.delete(key)


@pytest.mark.integration
@pytest.mark.parametrize("prefix", ["REDIS", "CACHE"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_with_a_url_the_injected_environment_is_not_read(platform, prefix, make_app,
                                                         redis_server, monkeypatch, key,
                                                         caplog):
    caplog.set_level(logging.DEBUG, "flask_core_redis")
    inject(monkeypatch, PLATFORMS[platform](prefix.lower(), *ELSEWHERE))
    monkeypatch.setenv(f"{prefix}_URL", f"redis://{redis_server.address}/0")
    assert_writes_reach(redis_server, prefix, key, make_app)
    assert port_lines(caplog, prefix) == []


@pytest.mark.integration
@pytest.mark.parametrize("prefix", ["REDIS", "CACHE"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_without_a_url_the_injected_address_names_the_server(platform, prefix, make_app,
                                                             redis_server, monkeypatch, key,
                                                             caplog):
    caplog.set_level(logging.DEBUG, "flask_core_redis")
    host, port = redis_server.address.rsplit(":", 1)
    inject(monkeypatch, PLATFORMS[platform](prefix.lower(), host, int(port)))
    assert_writes_reach(redis_server, prefix, key, make_app)
    [line] = port_lines(caplog, prefix)
    assert line.levelno == logging.INFO
    assert f"{prefix}_PORT='tcp://{redis_server.address}'" in line.getMessage()


@pytest.mark.parametrize("topology", [
    {"REDIS_SENTINELS": "s1:26379,s2:26379", "REDIS_SENTINEL_MASTER": "cache"},
    {"REDIS_CLUSTER_NODES": "n1:7000,n2:7001"},
    {"REDIS_URL": "redis+sentinel://s1:26379/cache/2"},
])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_sentinels_and_cluster_nodes_leave_the_injected_environment_unread(
        platform, topology, caplog):
    environ = {**PLATFORMS[platform]("redis", *ELSEWHERE), **topology}
    settings = load_settings("REDIS", {}, environ, {})
    assert settings.mode in ("sentinel", "cluster")
    assert ("10.96.0.5", 6380) not in settings.nodes
    assert port_lines(caplog, "REDIS") == []


def ignored(caplog: pytest.LogCaptureFixture, value: str, reason: str) -> None:
    """One warning: the value, why it is ignored, what the key takes."""
    [line] = port_lines(caplog, "REDIS")
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert message.startswith(f"[REDIS] REDIS_PORT={value!r} is ignored: ")
    assert reason in message
    assert "a port number from 1 to 65535, or a tcp://host:port address" in message


def test_an_injected_address_is_not_mixed_with_a_host_set_for_another_server(caplog):
    environ = {**kubernetes_service("redis", *ELSEWHERE), "REDIS_HOST": "cache.internal"}
    settings = load_settings("REDIS", {}, environ, {})
    assert settings.nodes == (("cache.internal", 6379),)
    ignored(caplog, "tcp://10.96.0.5:6380", "REDIS_HOST names the server")


def test_the_default_url_wins_over_an_injected_address(caplog, memory_url):
    settings = load_settings("REDIS", {}, kubernetes_service("redis", *ELSEWHERE), {},
                             default_url=memory_url)
    assert settings.mode == "memory"
    ignored(caplog, "tcp://10.96.0.5:6380", "the server is CoreRedis(default_url=")


def test_an_injected_address_of_another_protocol_is_ignored(caplog):
    settings = load_settings("REDIS", {}, {"REDIS_PORT": "udp://10.96.0.5:6380"}, {})
    assert settings.nodes == (("redis", 6379),)
    ignored(caplog, "udp://10.96.0.5:6380", "Redis is reached over TCP, not udp")


@pytest.mark.parametrize(("value", "node"), [
    ("tcp://10.96.0.5:6380", ("10.96.0.5", 6380)),
    ("TCP://redis-0.redis.default.svc:6379 ", ("redis-0.redis.default.svc", 6379)),
    ("tcp://[fd00:10:96::5]:6379", ("fd00:10:96::5", 6379)),
])
def test_an_injected_address_alone_names_the_server(value, node):
    assert load_settings("REDIS", {}, {"REDIS_PORT": value}, {}).nodes == (node,)


@pytest.mark.parametrize("value", ["tcp://10.96.0.5", "tcp://10.96.0.5:0",
                                   "tcp://u:pw@10.96.0.5:6379", "tcp://10.96.0.5:6379/0"])
def test_a_port_that_is_neither_a_number_nor_a_service_address_still_fails(value):
    with pytest.raises(ConfigurationError, match=r"REDIS_PORT=.* is invalid: expected an integer"):
        load_settings("REDIS", {}, {"REDIS_PORT": value}, {})


@given(st.text() | st.builds("tcp://{}:{}".format, st.text(), st.integers(0, 70000)))
@example("tcp://u:pw@h:6379")
@example("tcp://[::1]:6379")
def test_a_service_address_is_a_plain_host_and_port_or_nothing(text):
    service = parse_service_address(text)
    if service is not None:
        assert check_host(service.host, "") == service.host
        assert 1 <= service.port <= 65535
        assert parse_service_address(str(service)) == service


@given(suffix=st.sampled_from(["HOST", "PORT", "SENTINELS", "CLUSTER_NODES"]),
       value=st.text())
@example(suffix="PORT", value="tcp://10.96.0.5:6379")
@example(suffix="SENTINELS", value="u:pw@s1")
def test_a_url_leaves_every_key_it_overrides_unread(suffix, value):
    settings = load_settings("REDIS", {}, {f"REDIS_{suffix}": value,
                                           "REDIS_URL": "redis://url-host:6400/3"}, {})
    assert (settings.mode, settings.nodes, settings.db) == (
        "standalone", (("url-host", 6400),), 3)


@pytest.mark.parametrize("url", ["redis://alice:pw@h/3", "redis+sentinel://s1/primary/3"])
@pytest.mark.parametrize("value", ["not a number", "-1", "tcp://10.96.0.5:6379"])
def test_a_db_the_url_holds_is_not_read_from_the_keys(url, value):
    assert load_settings("REDIS", {"REDIS_DB": value, "REDIS_URL": url}, {}, {}).db == 3


#: Anything an environment variable can hold: no NUL, no lone surrogate.
ENVIRONMENT_TEXT = st.text(st.characters(blacklist_characters="\x00",
                                         blacklist_categories=("Cs",)))


@given(value=ENVIRONMENT_TEXT)
@example(value="tcp://10.96.0.5:6379")
@example(value="six")
def test_no_port_value_stops_an_app_whose_url_names_the_server(value):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REDIS_URL", "memory://injected")
        patch.setenv("REDIS_PORT", value)
        app = Flask("injected")
        ext = CoreRedis(app)
    with app.app_context():
        assert ext.settings.address == "memory://injected"
        ext.close()


@pytest.mark.parametrize(("dotenv", "node"), [
    ({"REDIS_HOST": "cache.internal", "REDIS_PORT": "6380"}, ("cache.internal", 6380)),
    ({"REDIS_PORT": "6380"}, ("redis", 6380)),
])
def test_a_port_the_app_sets_in_env_wins_over_an_injected_address(dotenv, node, caplog):
    """The environment ranks above ``.env``, but an injected address is no
    choice of the app's: the port number its ``.env`` sets is the one used."""
    settings = load_settings("REDIS", {}, kubernetes_service("redis", *ELSEWHERE), dotenv)
    assert settings.nodes == (node,)
    ignored(caplog, "tcp://10.96.0.5:6380", "REDIS_PORT is also set to a port number")
