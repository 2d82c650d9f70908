"""The proxy the fault-injection run puts in front of every data node
(tests/tcp_proxy.py): its faults do what the run's tables say they did."""

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .servers import LOOPBACK, RedisProcess, free_port, wait_until
from .tcp_proxy import FaultProxy

pytestmark = pytest.mark.integration


def through(proxy, **options):
    """A client of the proxy that never retries: each fault shows as it is."""
    return redis.Redis(host=LOOPBACK, port=proxy.port, retry=Retry(NoBackoff(), 0),
                       **options)


def test_latency_holds_every_reply_until_it_is_lifted(redis_server):
    with FaultProxy(redis_server.port) as proxy:
        client = through(proxy, socket_timeout=0.3)
        assert client.ping()
        proxy.latency = 1.0  # longer than the client waits
        with pytest.raises(redis.TimeoutError):
            client.ping()
        proxy.latency = 0.0
        assert through(proxy, socket_timeout=0.3).ping()


def test_dropping_cuts_every_open_connection_and_new_ones_get_through(redis_server):
    with FaultProxy(redis_server.port) as proxy:
        clients = [through(proxy) for _ in range(3)]
        before = [client.client_id() for client in clients]
        assert proxy.drop_connections() == 3
        # redis-py finds an idle connection closed and opens another.
        after = [client.client_id() for client in clients]
        assert not set(before) & set(after)
        with redis_server.client() as admin:
            wait_until(lambda: not {entry["id"] for entry in admin.client_list()}
                       & set(map(str, before)), 5, "the server to see them closed")


def test_a_server_that_is_down_is_a_refused_connection_until_it_is_up(tmp_path):
    port = free_port()
    with FaultProxy(port) as proxy:
        with pytest.raises(redis.ConnectionError):
            through(proxy).ping()
        server = RedisProcess(tmp_path, port).start()
        try:
            assert through(proxy).ping()
        finally:
            server.stop()
