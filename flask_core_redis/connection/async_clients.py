"""asyncio clients, one builder per topology, with what the blocking ones of
:mod:`.clients` have: the same keywords, TLS, retry policy (count and
deadline), connection events, pool size and blocking pool, error translation
on Cluster, and, on Sentinel, the registration's one
:class:`~.sentinel.MasterWatch`. Each is homed on an event loop
(:mod:`.loops`): its connections live there, and every call runs there."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

from redis.asyncio.client import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    Connection,
    ConnectionPool,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MaxConnectionsError

from ..config import Settings
from .async_connections import (
    EventedAsyncConnection,
    FollowingAsyncConnection,
    evented_async_class,
)
from .clients import client_kwargs
from .cluster import MasterChanges
from .events import ConnectionEvents
from .loops import HomedClusterPipeline, HomedRedis, at_home, homed
from .memory import build_memory_client, memory_server
from .pools import pool_class
from .redis_py import (
    ASYNC_SSL_CONNECTION,
    AsyncPoolFullIsMaxConnections,
    AsyncWaitsThenRaisesMaxConnections,
    RedactedRepr,
    as_redis_errors_async,
    names_nodes,
)
from .retry import AsyncPolicyRetry, build_async_retry
from .sentinel import MasterWatch
from .tls import ssl_kwargs

#: How often a Cluster command that waits for a free connection looks again.
FREE_CONNECTION_POLL_SECONDS = 0.005


class AsyncPool(AsyncPoolFullIsMaxConnections, RedactedRepr, ConnectionPool):
    """redis-py's asyncio pool: a command that finds every connection in use fails."""


class AsyncBlockingPool(AsyncWaitsThenRaisesMaxConnections, RedactedRepr,
                        BlockingConnectionPool):
    """redis-py's asyncio blocking pool: a command waits for a free connection,
    up to the pool timeout."""


class FollowsTheMasterAsync:
    """An asyncio pool of a Sentinel master's connections: one open to an
    address the watch no longer vouches for (the master moved while it was
    idle) is closed before it is handed out, and connects to the master."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super().get_connection(*args, **kwargs)  # type: ignore[misc]
        if connection.on_the_master():
            return connection
        try:
            await connection.disconnect()
            await connection.connect()
        except BaseException:
            await self.release(connection)  # type: ignore[attr-defined]
            raise
        return connection


class FollowingAsyncPool(FollowsTheMasterAsync, AsyncPool):
    """A Sentinel master's asyncio pool."""


class FollowingAsyncBlockingPool(FollowsTheMasterAsync, AsyncBlockingPool):
    """A Sentinel master's asyncio pool that waits for a free connection."""


class HomedRedisCluster(RedisCluster):
    """A ``redis.asyncio.RedisCluster`` homed on a loop, whose command retries
    wait as the policy says: redis-py's own loop retries without a delay, so
    it is given no retries, as :class:`~.cluster.RetryingRedisCluster` does.
    Commands that name nodes are not retried; "cannot reach the cluster" is
    the ConnectionError it wraps."""

    home: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, command_retry: AsyncPolicyRetry,
                 connection_class: type[AbstractConnection], pool_timeout: float | None,
                 master_changes: MasterChanges, **kwargs: Any) -> None:
        self.command_retry = command_retry
        self.master_changes = master_changes
        #: Seconds a command waits for a free connection of its node
        #: (POOL_TIMEOUT); None: it fails at once, as redis-py's does.
        self.pool_timeout = pool_timeout
        super().__init__(*args, **{**kwargs, "retry": Retry(NoBackoff(), 0)})
        # redis-py's asyncio cluster takes no connection class: it names its
        # own in the keywords every node is built from, and in the startup
        # nodes it has built already.
        self.connection_kwargs["connection_class"] = connection_class
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = connection_class  # type: ignore[assignment]

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await at_home(self.home, self._under_policy, *args, **kwargs)

    async def _under_policy(self, *args: Any, **kwargs: Any) -> Any:
        run = functools.partial(as_redis_errors_async, self._initialized_then,
                                self._with_a_free_connection, *args, **kwargs)
        if names_nodes(kwargs.get("target_nodes")):
            return await run()
        return await self.command_retry.call_with_retry(run, _ignore)

    async def initialize(self) -> Any:
        return await at_home(self.home, self._initialize_reporting)

    async def _initialize_reporting(self) -> Any:
        """Read the slot map, if it is due, and report masters that changed."""
        result = await RedisCluster.initialize(self)
        self.master_changes.read(self.nodes_manager)
        return result

    async def _initialized_then(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``call(...)`` once the slot map is read. Every caller waits for it
        here: redis-py's asyncio cluster (7.x), when commands race its first
        read of the map, closes connections other commands are using
        ("'NoneType' object has no attribute 'writelines'")."""
        if self._initialize:
            await self._initialize_reporting()
        return await call(*args, **kwargs)

    async def _with_a_free_connection(self, *args: Any, **kwargs: Any) -> Any:
        """The command; with a pool timeout, sent again while its node has no
        free connection, until the timeout (redis-py's asyncio cluster nodes
        never wait). A command refused so was never sent."""
        if self.pool_timeout is None:
            return await RedisCluster.execute_command(self, *args, **kwargs)
        gives_up = time.monotonic() + self.pool_timeout
        while True:
            try:
                return await RedisCluster.execute_command(self, *args, **kwargs)
            except MaxConnectionsError:
                if time.monotonic() >= gives_up:
                    raise
                await asyncio.sleep(FREE_CONNECTION_POLL_SECONDS)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        super().pipeline(transaction, shard_hint)  # redis-py's checks of both
        pipe = RetriedClusterPipeline(  # type: ignore[abstract]
            self, *([transaction] if transaction else []))
        pipe.home, pipe.command_retry, pipe.cluster = self.home, self.command_retry, self
        return pipe

    async def aclose(self, *args: Any, **kwargs: Any) -> None:
        await at_home(self.home, super().aclose, *args, **kwargs)


class RetriedClusterPipeline(HomedClusterPipeline):
    """A Cluster pipeline executed under the policy: redis-py's reads its
    retry count from the client (zero here), and empties itself as it
    executes, so each try stacks the commands anew."""

    #: The client's retry policy.
    command_retry: AsyncPolicyRetry
    #: The client.
    cluster: HomedRedisCluster

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stacked: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self._stacked.append((args, kwargs))
        return super().execute_command(*args, **kwargs)

    async def execute(self, raise_on_error: bool = True,
                      allow_redirections: bool = True) -> Any:
        stacked, self._stacked = self._stacked, []

        async def once() -> Any:
            await ClusterPipeline.reset(self)
            for args, kwargs in stacked:
                ClusterPipeline.execute_command(self, *args, **kwargs)
            return await as_redis_errors_async(
                self.cluster._initialized_then, ClusterPipeline.execute, self,
                raise_on_error, allow_redirections)

        return await at_home(self.home, self.command_retry.call_with_retry,
                             once, _ignore)


async def _ignore(error: BaseException) -> None:
    """A retry's failure callback that has nothing to do."""


def build_async_client(settings: Settings, events: ConnectionEvents,
                       options: Mapping[str, Any], home: asyncio.AbstractEventLoop, *,
                       duplicate: bool = False, watch: MasterWatch | None = None) -> Any:
    """A new asyncio client for ``settings``, homed on ``home``; ``duplicate``
    as for :func:`~.clients.build_client`."""
    kwargs = {**client_kwargs(settings, duplicate), **async_options(options)}
    if settings.mode == "sentinel":
        if watch is None:
            raise ValueError("a Sentinel client needs its registration's MasterWatch")
        kwargs["watch"] = watch
    return homed(_ASYNC_BUILDERS[settings.mode](settings, events, kwargs), home)


@functools.cache
def _async_keywords() -> frozenset[str]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    callables = (ConnectionPool.__init__, AbstractConnection.__init__,
                 ASYNC_SSL_CONNECTION.__init__, RedisCluster.__init__)
    return frozenset(parameter.name for function in callables
                     for parameter in inspect.signature(function).parameters.values()
                     if parameter.kind in kinds)


def async_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options given to ``CoreRedis()`` that redis-py's asyncio client
    takes; the others (``ssl_validate_ocsp``...) are blocking-only."""
    return {name: value for name, value in options.items() if name in _async_keywords()}


def _connection_class(settings: Settings) -> type[AbstractConnection]:
    if settings.unix_socket:
        return UnixDomainSocketConnection
    return ASYNC_SSL_CONNECTION if settings.ssl else Connection


def _address(settings: Settings) -> dict[str, Any]:
    if settings.unix_socket:
        return {"path": settings.unix_socket}
    (host, port), = settings.nodes
    return {"host": host, "port": port}


def _standalone(settings: Settings, events: ConnectionEvents,
                kwargs: dict[str, Any]) -> Redis:
    if settings.ssl:
        kwargs.update(ssl_kwargs(settings))
    pool = pool_class(settings, AsyncPool, AsyncBlockingPool)(
        connection_class=evented_async_class(_connection_class(settings), events),
        retry=build_async_retry(settings, events),
        db=settings.db, **_address(settings), **kwargs)
    return HomedRedis.from_pool(pool)


def _sentinel(settings: Settings, events: ConnectionEvents, kwargs: dict[str, Any]) -> Redis:
    watch = kwargs.pop("watch")
    if settings.ssl:
        kwargs.update(ssl_kwargs(settings))
    connection_class = evented_async_class(
        ASYNC_SSL_CONNECTION if settings.ssl else Connection, events,
        FollowingAsyncConnection, watch=watch)
    pool = pool_class(settings, FollowingAsyncPool, FollowingAsyncBlockingPool)(
        connection_class=connection_class,
        retry=build_async_retry(settings, events),
        db=settings.db, host=settings.sentinel_master, port=0, **kwargs)
    return HomedRedis.from_pool(pool)


def _cluster(settings: Settings, events: ConnectionEvents,
             kwargs: dict[str, Any]) -> RedisCluster:
    (host, port), *others = settings.nodes
    tls = {"ssl": True, **ssl_kwargs(settings)} if settings.ssl else {}
    base = ASYNC_SSL_CONNECTION if settings.ssl else Connection
    kwargs.pop("connection_pool_class", None)
    return HomedRedisCluster(
        host=host, port=port, require_full_coverage=False,
        startup_nodes=[ClusterNode(h, p) for h, p in others],
        connection_class=evented_async_class(base, events),
        command_retry=build_async_retry(settings, events, RedisCluster.ERRORS_ALLOW_RETRY),
        pool_timeout=settings.pool_timeout,
        master_changes=MasterChanges(events, settings.address), **tls, **kwargs)


def _memory(settings: Settings, events: ConnectionEvents, kwargs: dict[str, Any]) -> Any:
    memory_server(settings)  # the extra's absence, said first
    from fakeredis import FakeAsyncRedis
    from fakeredis.aioredis import FakeAsyncRedisConnection

    class ClosingFakeConnection(FakeAsyncRedisConnection):
        """fakeredis 2.38-2.41's asyncio connection drops its fake socket
        without closing it, so the embedded server keeps a closed
        connection's subscriptions (and their messages) for ever."""

        async def disconnect(self, *args: Any, **kwargs: Any) -> None:
            sock = self._sock
            if sock is not None:
                sock.close()
            await super().disconnect(*args, **kwargs)

    homed_class = type("HomedFakeAsyncRedis", (HomedRedis, FakeAsyncRedis), {})
    return build_memory_client(settings, events, kwargs,
                               functools.partial(homed_class,
                                                 connection_class=ClosingFakeConnection))


_ASYNC_BUILDERS: dict[str, Callable[[Settings, ConnectionEvents, dict[str, Any]], Any]] = {
    "standalone": _standalone,
    "sentinel": _sentinel,
    "cluster": _cluster,
    "memory": _memory,
}

__all__ = ["EventedAsyncConnection", "build_async_client"]
