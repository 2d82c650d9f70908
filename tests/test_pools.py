"""The pool size and the waiting pool (REDIS_MAX_CONNECTIONS, REDIS_POOL_TIMEOUT)
on every topology with a real server: beyond the limit a command fails at once,
or, with a pool timeout, waits for a connection to come back."""

import threading

import pytest
import redis

from flask_core_redis import ConfigurationError

pytestmark = pytest.mark.integration

TOPOLOGIES = ["standalone", "sentinel", "cluster"]


def pool_of(client, key):
    """The pool that serves ``key`` (a node's pool in Cluster)."""
    if isinstance(client, redis.RedisCluster):
        return client.get_node_from_key(key).redis_connection.connection_pool
    return client.connection_pool


def url_of(request, topology):
    if topology == "standalone":
        return f"redis://{request.getfixturevalue('redis_server').address}"
    return request.getfixturevalue(topology).url


@pytest.fixture
def one_connection_app(request, make_app):
    def build(topology, **keys):
        return make_app({"REDIS_URL": url_of(request, topology), "REDIS_MAX_CONNECTIONS": 1,
                         **{f"REDIS_{name}": value for name, value in keys.items()}})
    return build


def in_thread(call):
    """Run ``call`` in a thread; the thread and a list that gets its outcome."""
    outcome = []

    def run():
        try:
            outcome.append(call())
        except Exception as error:  # handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_beyond_the_limit_a_command_fails_at_once(one_connection_app, topology, key):
    app, ext = one_connection_app(topology)
    with app.app_context():
        pool = pool_of(ext.client, key)
        held = pool.get_connection()
        try:
            retries = []
            ext.events.subscribe(lambda event: retries.append(event) if event.kind == "retry"
                                 else None)
            with pytest.raises(redis.exceptions.MaxConnectionsError):
                ext.client.get(key)
            assert retries == []  # a full pool is not an outage
        finally:
            pool.release(held)
        assert ext.client.get(key) is None  # and the connection serves again


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_with_a_pool_timeout_a_command_waits_for_a_free_connection(one_connection_app,
                                                                   topology, key):
    app, ext = one_connection_app(topology, POOL_TIMEOUT=10_000)
    with app.app_context():
        ext.client.set(key, "v")
        pool = pool_of(ext.client, key)
        held = pool.get_connection()
        client = ext.client
        waiter, outcome = in_thread(lambda: client.get(key))
        waiter.join(0.5)
        assert waiter.is_alive() and outcome == []  # waiting, not failed
        pool.release(held)
        waiter.join(5)
        assert outcome == ["v"]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_wait_that_runs_out_raises_max_connections_without_retries(one_connection_app,
                                                                     topology, key):
    app, ext = one_connection_app(topology, POOL_TIMEOUT=200, MAX_RETRIES=3)
    with app.app_context():
        kinds = []
        ext.events.subscribe(lambda event: kinds.append(event.kind))
        pool = pool_of(ext.client, key)
        held = pool.get_connection()
        try:
            with pytest.raises(redis.exceptions.MaxConnectionsError, match="in use"):
                ext.client.get(key)
        finally:
            pool.release(held)
        assert "retry" not in kinds and "error" not in kinds
        assert ext.client.get(key) is None


def test_a_pool_timeout_needs_a_pool_size(make_app, memory_url):
    with pytest.raises(ConfigurationError, match=r"REDIS_POOL_TIMEOUT.*set REDIS_MAX_CONNECTIONS"):
        make_app({"REDIS_URL": memory_url, "REDIS_POOL_TIMEOUT": 100})


@pytest.mark.parametrize("value", ["0", "-1", "ten", "1.5"])
def test_a_pool_size_that_is_not_a_positive_integer_is_refused(make_app, memory_url, value):
    with pytest.raises(ConfigurationError, match=r"REDIS_MAX_CONNECTIONS.*integer >= 1"):
        make_app({"REDIS_URL": memory_url, "REDIS_MAX_CONNECTIONS": value})


def test_the_embedded_server_takes_the_keys_and_has_no_limit(make_app, memory_url, key):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_MAX_CONNECTIONS": 1,
                         "REDIS_POOL_TIMEOUT": 100})
    with app.app_context():
        held = ext.client.connection_pool.get_connection()
        assert ext.client.set(key, "v") and ext.client.get(key) == "v"
        ext.client.connection_pool.release(held)
