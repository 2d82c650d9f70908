"""Client building, one function per topology. Each builds its ``Retry``, its
connection class and its timeouts explicitly: nothing is left to redis-py's
defaults or to ``from_url``, which drop a configured retry on some paths."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import (
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import ConnectionError, RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from .connections import EventedSentinelConnection, evented_class
from .errors import ConfigurationError
from .events import ConnectionEvents
from .retry import build_retry
from .settings import Settings

AnyClient = Redis | RedisCluster

DUPLICATE_HEALTH_CHECK_INTERVAL = 30

#: Options that the extension derives from configuration; passing them to
#: ``CoreRedis(**client_options)`` would silently undo the configured policy.
MANAGED_OPTIONS = frozenset({
    "retry", "connection_class", "connection_pool", "host", "port", "path",
    "startup_nodes", "url",
})


def build_client(settings: Settings, events: ConnectionEvents,
                 options: Mapping[str, Any], *, duplicate: bool = False) -> AnyClient:
    """A new client for ``settings``; ``duplicate`` makes one for subscribers and
    blocking commands: no read timeout, health checks on."""
    builder = _BUILDERS[settings.mode]
    kwargs = {**_common_kwargs(settings, duplicate), **options}
    return builder(settings, events, kwargs)


def _common_kwargs(settings: Settings, duplicate: bool) -> dict[str, Any]:
    interval = settings.health_check_interval
    return {
        "username": settings.username,
        "password": settings.password,
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": None if duplicate else settings.socket_timeout,
        "decode_responses": settings.decode_responses,
        "client_name": settings.client_name,
        "health_check_interval": (interval or DUPLICATE_HEALTH_CHECK_INTERVAL)
        if duplicate else interval,
    }


def build_standalone_client(settings: Settings, events: ConnectionEvents,
                            kwargs: dict[str, Any]) -> Redis:
    base: type[Connection] | type[UnixDomainSocketConnection]
    if settings.unix_socket:
        address: dict[str, Any] = {"path": settings.unix_socket}
        base = UnixDomainSocketConnection
    else:
        (host, port), = settings.nodes
        address = {"host": host, "port": port}
        base = SSLConnection if settings.ssl else Connection
    if settings.ssl:
        kwargs.update(_ssl_kwargs(settings))
    pool = ConnectionPool(
        connection_class=evented_class(base, events),
        retry=build_retry(settings.max_retries, events, settings.address),
        db=settings.db, **address, **kwargs)
    return Redis.from_pool(pool)


def _ssl_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "ssl_ca_certs": settings.ssl_ca_certs,
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
        "ssl_cert_reqs": settings.ssl_cert_reqs,
        "ssl_check_hostname": settings.ssl_cert_reqs == "required",
    }


def build_sentinel_client(settings: Settings, events: ConnectionEvents,
                          kwargs: dict[str, Any]) -> Redis:
    sentinel = Sentinel(list(settings.nodes), sentinel_kwargs={
        "username": settings.sentinel_username,
        "password": settings.sentinel_password,
        "socket_connect_timeout": settings.connect_timeout,
        # A sentinel that hangs must not hang master discovery either.
        "socket_timeout": settings.connect_timeout,
        "decode_responses": True,
        # Each lookup asks every sentinel once; the data connection's own
        # retry policy repeats the whole lookup with its delays.
        "retry": Retry(NoBackoff(), 0),
    })
    connection_class = evented_class(SentinelManagedConnection, events,
                                     EventedSentinelConnection)
    client: Redis = sentinel.master_for(
        settings.sentinel_master, connection_class=connection_class,
        retry=build_retry(settings.max_retries, events, settings.address),
        db=settings.db, **kwargs)
    return client


class RetryingRedisCluster(RedisCluster):
    """RedisCluster whose command retries wait as the policy says.

    redis-py's own cluster loop retries without any delay, which burns every
    attempt before a failover can finish. Here that loop is given no retries and
    each command runs under the project's ``Retry`` instead. Commands sent to
    explicit ``target_nodes`` are not retried, as in redis-py: after a topology
    change those nodes may no longer be the right ones."""

    def __init__(self, *args: Any, command_retry: Retry, **kwargs: Any) -> None:
        self.command_retry = command_retry  # the constructor already sends COMMAND
        super().__init__(*args, **{**kwargs, "retry": Retry(NoBackoff(), 0)})

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction=transaction, shard_hint=shard_hint)
        # The pipeline reads its retry count from here when it executes: give
        # it the policy's count rather than the zero this client's loop uses.
        pipe.retry = self.command_retry
        return pipe

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        run = functools.partial(super().execute_command, *args, **kwargs)
        if kwargs.get("target_nodes") is not None:
            return run()
        return self.command_retry.call_with_retry(run, lambda error: None)


def build_cluster_client(settings: Settings, events: ConnectionEvents,
                         kwargs: dict[str, Any]) -> RedisCluster:
    command_retry = build_retry(settings.max_retries, events, settings.address,
                                RedisCluster.ERRORS_ALLOW_RETRY)

    (first_host, first_port), *others = settings.nodes
    host = f"[{first_host}]" if ":" in first_host else first_host

    def connect() -> RedisCluster:
        try:
            # Given a URL (without credentials: those stay in kwargs), RedisCluster
            # builds each node's pool from the keyword arguments, connection_class
            # included; given only startup nodes, it would drop connection_class.
            return RetryingRedisCluster(
                url=f"redis://{host}:{first_port}",
                startup_nodes=[ClusterNode(h, p) for h, p in others],
                connection_class=evented_class(Connection, events),
                command_retry=command_retry, **kwargs)
        except RedisClusterException as error:  # no startup node reachable
            raise ConnectionError(str(error)) from error

    # RedisCluster reads the slot map while it is constructed; a cluster that
    # is down is retried like any command, then reported as a ConnectionError.
    return command_retry.call_with_retry(connect, lambda error: None)


_memory_servers: dict[str, Any] = {}
_memory_lock = threading.Lock()


def build_memory_client(settings: Settings, events: ConnectionEvents,
                        kwargs: dict[str, Any]) -> Redis:
    """An in-process server (fakeredis, with Lua) shared by every client
    built from the same ``memory://name`` in this process."""
    try:
        import fakeredis
    except ImportError:
        raise ConfigurationError(
            f"{settings.prefix}_URL=memory://... needs the embedded server: "
            "pip install 'flask-core-redis[memory]'") from None
    with _memory_lock:
        server = _memory_servers.get(settings.memory_name)
        if server is None:
            server = _memory_servers[settings.memory_name] = fakeredis.FakeServer()
    # Credentials are left out: the embedded server has no users to check.
    wanted = ("decode_responses", "client_name")
    client: Redis = fakeredis.FakeRedis(
        server=server, db=settings.db, **{k: kwargs[k] for k in wanted if k in kwargs})
    return client


_BUILDERS: dict[str, Callable[[Settings, ConnectionEvents, dict[str, Any]], AnyClient]] = {
    "standalone": build_standalone_client,
    "sentinel": build_sentinel_client,
    "cluster": build_cluster_client,
    "memory": build_memory_client,
}
