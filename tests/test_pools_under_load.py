"""The bounded pools under load: many threads on a small pool, commands that
fail on the way, and a Sentinel failover under a waiting pool."""

import threading
import time
import uuid

import pytest
import redis

from .test_pools import pool_of, url_of

pytestmark = pytest.mark.integration

TOPOLOGIES = ["standalone", "sentinel", "cluster"]


def hammer(client, keys, rounds, errors):
    def work():
        try:
            for n in range(rounds):
                for key in keys:
                    client.set(key, n)
                    client.get(key)
        except Exception as error:  # handed to the test
            errors.append(error)
    return threading.Thread(target=work, daemon=True)


def idle_connections(pool):
    """How many connections the pool can hand out now without opening more
    than its limit allows (a waiting pool: its free slots)."""
    if isinstance(pool, redis.BlockingConnectionPool):
        return pool.pool.qsize()
    return pool.max_connections - len(pool._in_use_connections)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_many_threads_on_a_small_waiting_pool_neither_fail_nor_leak(request, make_app,
                                                                     topology):
    app, ext = make_app({"REDIS_URL": url_of(request, topology), "REDIS_MAX_CONNECTIONS": 2,
                         "REDIS_POOL_TIMEOUT": 20_000})
    keys = [f"load:{uuid.uuid4().hex}" for _ in range(4)]
    errors = []
    with app.app_context():
        client = ext.client
        threads = [hammer(client, keys, 30, errors) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "deadlock"
        assert errors == []
        for key in keys:
            assert idle_connections(pool_of(client, key)) == 2


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_command_that_fails_gives_its_connection_back(request, make_app, topology, key):
    app, ext = make_app({"REDIS_URL": url_of(request, topology), "REDIS_MAX_CONNECTIONS": 1})
    with app.app_context():
        client = ext.client
        client.set(key, "a string")
        for _ in range(3):
            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                client.lpush(key, "x")
        pipe = client.pipeline()
        pipe.lpush(key, "x")
        with pytest.raises(redis.ResponseError):
            pipe.execute()
        assert client.get(key) == "a string"
        assert idle_connections(pool_of(client, key)) == 1


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_command_that_times_out_gives_its_connection_back(request, make_app, topology,
                                                           key):
    app, ext = make_app({"REDIS_URL": url_of(request, topology), "REDIS_MAX_CONNECTIONS": 1,
                         "REDIS_SOCKET_TIMEOUT": 200, "REDIS_MAX_RETRIES": 1})
    with app.app_context():
        client = ext.client
        with pytest.raises(redis.TimeoutError):
            client.blpop([key], timeout=2)
        assert client.set(key, "v") and client.get(key) == "v"
        assert idle_connections(pool_of(client, key)) == 1


def test_a_waiting_pool_survives_a_sentinel_failover(make_app, own_sentinel, key):
    """Six threads on a pool of two through a failover: every thread writes
    again after it, none is refused by the pool, and both connections are
    back in the pool afterwards (none lost with the old master)."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url, "REDIS_MAX_CONNECTIONS": 2,
                         "REDIS_POOL_TIMEOUT": 60_000, "REDIS_CONNECT_TIMEOUT": 500})
    killed = threading.Event()
    full, done = [], []
    with app.app_context():
        client = ext.client
        client.incr(key)

        def work():
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    client.incr(key)
                except redis.MaxConnectionsError as error:
                    full.append(error)
                except redis.RedisError:
                    pass
                else:
                    if killed.is_set():
                        done.append(1)
                        return
                time.sleep(0.01)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(6)]
        for thread in threads:
            thread.start()
        own_sentinel.process_on(own_sentinel.master_port()).kill()
        killed.set()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "deadlock"
        assert (full, len(done)) == ([], 6)
        assert idle_connections(client.connection_pool) == 2


@pytest.mark.parametrize("pool_timeout", [None, 200])
def test_a_cluster_pipeline_on_a_full_pool_raises_max_connections(make_app, cluster, key,
                                                                  pool_timeout):
    """As the README says: redis-py's cluster pipeline retries a full pool as
    it would a failed node, without delays, and then the caller gets
    MaxConnectionsError, with nothing written."""
    config = {"REDIS_URL": cluster.url, "REDIS_MAX_CONNECTIONS": 1, "REDIS_MAX_RETRIES": 3}
    if pool_timeout is not None:
        config["REDIS_POOL_TIMEOUT"] = pool_timeout
    app, ext = make_app(config)
    with app.app_context():
        client = ext.client
        client.set(key, "before")
        pool = pool_of(client, key)
        held = pool.get_connection()
        try:
            pipe = client.pipeline()
            pipe.set(key, "after")
            with pytest.raises(redis.MaxConnectionsError):
                pipe.execute()
        finally:
            pool.release(held)
        assert client.get(key) == "before"
