"""Building a Sentinel master's client: its pool, its connections and the
registration's :class:`~.watch.MasterWatch` they all follow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis import Redis
from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from ...config import Settings
from ..connections import evented_class
from ..events import ConnectionEvents
from ..pools import pool_class
from ..retry import build_retry
from ..tls import ssl_kwargs
from .connections import EventedSentinelConnection
from .pools import BlockingSentinelPool, FollowingSentinelPool
from .watch import MasterWatch


def build_master_watch(settings: Settings, events: ConnectionEvents,
                       options: Mapping[str, Any]) -> MasterWatch:
    """The watch every client of one registration follows the master with:
    the sentinels' own credentials, and TLS as ``sentinel_ssl`` says,
    whatever the data nodes use; the TLS options passed to CoreRedis()
    (``ssl_password``, ``ssl_ciphers``...) go wherever TLS is spoken."""
    tls = ({"ssl": True, **ssl_kwargs(settings), **_tls_options(options)}
           if settings.sentinel_ssl else {})
    return MasterWatch(settings.sentinel_master, list(settings.nodes), {
        "username": settings.sentinel_username,
        "password": settings.sentinel_password,
        **tls,
    }, settings.connect_timeout, events)


def build_sentinel_client(settings: Settings, events: ConnectionEvents,
                          kwargs: dict[str, Any], watch: MasterWatch) -> Redis:
    """A client of the master ``watch`` follows."""
    tls_options = _tls_options(kwargs)
    for name in tls_options:
        del kwargs[name]
    base = SentinelManagedConnection
    if settings.ssl:
        base = SentinelManagedSSLConnection
        kwargs.update(ssl_kwargs(settings), **tls_options)
    pool = pool_class(settings, FollowingSentinelPool, BlockingSentinelPool)(
        settings.sentinel_master, watch, is_master=True,
        connection_class=evented_class(base, events, EventedSentinelConnection),
        retry=build_retry(settings, events), db=settings.db, **kwargs)
    return Redis.from_pool(pool)


def _tls_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in options.items() if name.startswith("ssl_")}
