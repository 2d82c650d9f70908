"""Client building, one function per topology. Each builds its ``Retry``, its
connection class and its timeouts explicitly: nothing is left to redis-py's
defaults or to ``from_url``, which drop a configured retry on some paths."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from redis import Redis
from redis.cluster import RedisCluster
from redis.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from ..config import Settings
from .cluster import build_cluster_client, cluster_kwargs
from .connections import evented_class
from .events import ConnectionEvents
from .memory import build_memory_client
from .pools import pool_class, pool_limits
from .retry import build_retry
from .sentinel import MasterWatch, build_sentinel_client
from .tls import ssl_kwargs

AnyClient = Redis | RedisCluster

DUPLICATE_HEALTH_CHECK_INTERVAL = 30


def build_client(settings: Settings, events: ConnectionEvents,
                 options: Mapping[str, Any], *, duplicate: bool = False,
                 watch: MasterWatch | None = None) -> AnyClient:
    """A new client for ``settings``; ``duplicate`` makes one for subscribers and
    blocking commands: no read timeout, health checks on. In Sentinel mode
    ``watch`` is the registration's, which every one of its clients follows."""
    kwargs = {**client_kwargs(settings, duplicate), **options}
    if settings.mode == "sentinel":
        if watch is None:
            raise ValueError("a Sentinel client needs its registration's MasterWatch")
        return build_sentinel_client(settings, events, kwargs, watch)
    return _BUILDERS[settings.mode](settings, events, kwargs)


def cluster_options(settings: Settings, events: ConnectionEvents,
                    options: Mapping[str, Any]) -> dict[str, Any]:
    """What the shared client's ``RedisCluster`` is built with, for a library
    that builds its own (limits): nodes, credentials, timeouts, client name,
    connection events; not the retry policy, which is a subclass's."""
    return cluster_kwargs(settings, events, {**client_kwargs(settings, False), **options})


def client_kwargs(settings: Settings, duplicate: bool) -> dict[str, Any]:
    """The keywords every client of ``settings`` is built with, blocking or
    asyncio: credentials, timeouts, decoding, name, health checks, pool size."""
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
        **pool_limits(settings),
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
        kwargs.update(ssl_kwargs(settings))
    pool = pool_class(settings)(
        connection_class=evented_class(base, events),
        retry=build_retry(settings, events),
        db=settings.db, **address, **kwargs)
    return Redis.from_pool(pool)


_BUILDERS: dict[str, Callable[[Settings, ConnectionEvents, dict[str, Any]], AnyClient]] = {
    "standalone": build_standalone_client,
    "cluster": build_cluster_client,
    "memory": build_memory_client,
}
