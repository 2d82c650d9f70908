"""Where this package works around redis-py: the workarounds that stand on
their own, and :data:`WORKAROUNDS`, the index of every one, here or in the
class it is part of.

Each entry names the redis-py versions it targets (``redis-py 6.4-7.3``:
the supported releases that behave so; ``all`` when every supported release
does), the behaviour it fixes, and how to tell when it can go. A workaround
that is the override of a redis-py method stays in its class, and is listed
here by its location; the logic an async client needs as well (error
translation, pool reprs and waits, the disconnect's cause, the asyncio TLS
connection) lives in this module, for both to use."""

from __future__ import annotations

import functools
import inspect
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio.connection import Connection as AsyncConnection
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.cluster import RedisCluster
from redis.exceptions import (
    ConnectionError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
    TimeoutError,
)
from redis.retry import Retry

from .retry import NEVER_RETRIED

T = TypeVar("T")


@dataclass(frozen=True)
class Workaround:
    """One place where the package works around redis-py."""

    #: Where it is: ``module:qualified.name``, the module relative to
    #: :mod:`flask_core_redis.connection` when it starts with a dot.
    location: str
    #: The redis-py releases it targets (``6.4-7.3``, or ``all``).
    versions: str
    #: The redis-py behaviour it fixes.
    fixes: str
    #: How to tell that it can go.
    remove_when: str


#: Every redis-py workaround of the package.
WORKAROUNDS: tuple[Workaround, ...] = (
    # Connections ---------------------------------------------------------------
    Workaround(
        ".connections:EventedConnection.connect", "6.4-7.1",
        "connect() connects once and leaves a failure to the command's retry, which "
        "a pool's first connect never reaches",
        "the lowest supported redis-py is 7.2, whose connect() retries connect and "
        "handshake together; keep _connect_once, which the Sentinel pool calls"),
    Workaround(
        ".connections:EventedConnection.connect_check_health", "all",
        "a reconnect inside a retried command runs a retry loop of its own: "
        "(retries + 1) squared attempts",
        "redis-py stops retrying the socket connect inside a command's retry"),
    Workaround(
        ".connections:EventedConnection._connect", "6.4-8.1",
        "the TLS handshake waits under the read timeout (unset by default), for "
        "ever on a server that hangs; 8.2 shakes hands under the connect timeout",
        "the lowest supported redis-py is 8.2 and the attempt's shared bound "
        "(connect and handshake together) moves elsewhere"),
    Workaround(
        ".connections:EventedConnection.on_connect_check_health", "all",
        "the handshake (AUTH, HELLO, SELECT, CLIENT SETNAME) runs under the read "
        "timeout, not within the connect attempt's bound",
        "redis-py bounds connect and handshake by one connect timeout"),
    Workaround(
        ".redis_py:disconnect_cause", "all",
        "disconnect() is often called bare from an except block, without the error",
        "redis-py passes the error to every disconnect() it makes after a failure"),
    Workaround(
        ".events:ConnectionEvents.__deepcopy__", "all",
        "connections and clients deep-copy the retry, and with it its backoff's events",
        "redis-py stops copying the retry object it is given"),
    # Retry ---------------------------------------------------------------------
    Workaround(
        ".retry:PolicyRetry.call_with_retry", "6.4-7.1",
        "Retry.call_with_retry takes is_retryable from 7.0 and with_failure_count "
        "from 7.2, and redis-py passes them: the loop is written out to accept both "
        "shapes (it reads Retry's private _backoff, _retries, _supported_errors)",
        "the lowest supported redis-py is 7.2; the loop itself stays for the "
        "deadline and the errors never retried"),
    # Pools ---------------------------------------------------------------------
    Workaround(
        ".redis_py:RedactedRepr", "6.4-7.3",
        "a pool's repr prints every connection keyword, the password too, and "
        "errors embed it (a sentinel's MasterNotFoundError)",
        "the lowest supported redis-py is 7.4, which masks username, password "
        "and credential_provider in pool reprs (sync and asyncio)"),
    Workaround(
        ".redis_py:WaitsThenRaisesMaxConnections", "all",
        "a blocking pool whose wait ends raises a bare ConnectionError('No "
        "connection available.'), which the retry policy takes for an outage; "
        "matched by its text (is_pool_wait_ended)",
        "redis-py raises MaxConnectionsError (or another subclass) there"),
    # Cluster -------------------------------------------------------------------
    Workaround(
        ".cluster:RetryingRedisCluster", "all",
        "the cluster's command loop retries without any delay, burning every "
        "attempt before a failover ends",
        "RedisCluster's loop waits by its Retry's backoff between tries"),
    Workaround(
        ".redis_py:pipeline_under_policy", "all",
        "a cluster pipeline reads its retry count from the client (zero here), and "
        "its execute() raises RedisClusterException, no RedisError, for an outage",
        "RetryingRedisCluster goes, and RedisClusterException wraps no outage"),
    Workaround(
        ".redis_py:as_redis_errors", "all",
        "'cannot reach the cluster' is a RedisClusterException, no RedisError, "
        "wrapping the ConnectionError or AuthenticationError; the wrapped error is "
        "read from __cause__, else from __context__ for a raise without 'from'",
        "redis-py raises the connection error itself (8.2 adds "
        "RedisClusterUnreachableError, still no ConnectionError)"),
    Workaround(
        ".cluster:cluster_kwargs", "all",
        "given only startup nodes, RedisCluster drops connection_class, and "
        "ssl=True swaps it for redis-py's: the first node goes as a URL, TLS as "
        "ssl_* keywords",
        "RedisCluster hands connection_class to every node's pool"),
    Workaround(
        ".options:_cluster", "all",
        "RedisCluster drops, without a word, keywords outside REDIS_ALLOWED_KEYS",
        "RedisCluster refuses keywords it does not hand on"),
    # Pub/sub -------------------------------------------------------------------
    Workaround(
        ".pubsub:ShardedPubSub.get_message", "6.4-7.4",
        "ClusterPubSub's round robin ignores the timeout, returns None for every "
        "message when asked to leave confirmations out, and keeps reading a node "
        "that failed, so a failover silences its channels",
        "the lowest supported redis-py is 8.0, which polls with the timeout and "
        "re-routes shard channels itself (check the confirmations)"),
    Workaround(
        ".pubsub:subscribe", "all",
        "a PubSub keeps only the pool: its client may be collected, and closing "
        "it closes the subscription's connection (pubsub.owner keeps it)",
        "PubSub holds a reference to its client"),
    # Sentinel ------------------------------------------------------------------
    Workaround(
        ".sentinel.watch:MasterWatch", "all",
        "SentinelConnectionPool asks the sentinels on each connect, one after the "
        "other, and hears no announcement: the watch follows the master for every "
        "pool of a registration (get_master_address, connections and pools ask it)",
        "redis-py's Sentinel follows announcements and bounds a lookup"),
    Workaround(
        ".sentinel.connections:EventedSentinelConnection._connect_retry", "all",
        "redis-py asks where the master is in connect() only; a reconnect inside a "
        "retried command goes back to the old address",
        "SentinelManagedConnection asks for the master before each socket"),
    Workaround(
        ".sentinel.connections:EventedSentinelConnection.read_response", "6.4-8.1",
        "a sentinel connection keeps itself after an error while reading a reply "
        "(disconnect_on_error=False), and the next command reads the rest of it",
        "the lowest supported redis-py is 8.2, whose default is True"),
    Workaround(
        ".sentinel.pools:FollowsTheMaster.owns_connection", "6.4-8.0",
        "the sentinel pool disowns a connection open to another address, and "
        "before 8.1 loses a slot of the pool for each one it turns away",
        "the lowest supported redis-py is 8.1, and the address check suits the "
        "watch (release() closes such connections here)"),
    Workaround(
        ".redis_py:PasswordedSSLConnection", "6.4-7.1",
        "the asyncio TLS connection takes no ssl_password nor ssl_ca_path, which "
        "the blocking one does",
        "the lowest supported redis-py is 7.2 (ASYNC_SSL_CONNECTION is then "
        "redis-py's own)"),
    Workaround(
        ".redis_py:abort_stream", "all",
        "an asyncio connection's disconnect() waits for the server's TLS close, up "
        "to half a minute from a server that hangs; it reads the private _writer",
        "disconnect() aborts the transport, or the stream writer is renamed "
        "(then this stops aborting: tests/test_sentinel_stopping.py fails)"),
    # asyncio clients -----------------------------------------------------------
    Workaround(
        ".async_connections:EventedAsyncConnection.connect", "all",
        "the asyncio connect() (6.4-7.1: once; 7.2+: under the retry, each attempt "
        "unbounded as a whole) leaves connect and handshake without one bound",
        "redis-py bounds connect and handshake by one connect timeout"),
    Workaround(
        ".async_connections:EventedAsyncConnection.connect_check_health", "7.0-8.2",
        "sending on a closed asyncio connection reconnects through "
        "connect_check_health, not connect(), past any override of connect()",
        "redis-py reconnects through connect()"),
    Workaround(
        ".async_connections:FollowingAsyncConnection._open", "all",
        "redis.asyncio's Sentinel pool asks the sentinels on each connect, one after "
        "the other, and hears no announcement (as the blocking one)",
        "redis-py's Sentinel follows announcements and bounds a lookup"),
    Workaround(
        ".redis_py:AsyncPoolFullIsMaxConnections", "6.4-7.1",
        "the asyncio pool raises a bare ConnectionError('Too many connections') "
        "when every connection is in use, which the retry policy takes for an "
        "outage; matched by its text",
        "the lowest supported redis-py is 7.2, which raises MaxConnectionsError"),
    Workaround(
        ".redis_py:AsyncWaitsThenRaisesMaxConnections", "all",
        "the asyncio blocking pool's ended wait is a bare ConnectionError too",
        "redis-py raises MaxConnectionsError (or another subclass) there"),
    Workaround(
        ".async_clients:HomedRedisCluster", "all",
        "the asyncio cluster's command loop retries without any delay, and 'cannot "
        "reach the cluster' is a RedisClusterException (as_redis_errors_async); "
        "it takes no connection class, so its nodes' is set after it is built; "
        "commands that race its first read of the slot map break each other's "
        "connections (7.x), so each waits for that read first (_initialized_then)",
        "RedisCluster's loop waits by its Retry's backoff between tries"),
    Workaround(
        ".async_clients:HomedRedisCluster._with_a_free_connection", "all",
        "the asyncio cluster's nodes take no pool class and never wait for a free "
        "connection: a command is sent again until POOL_TIMEOUT while its node's "
        "pool is full",
        "redis.asyncio.RedisCluster's nodes take a blocking pool"),
    Workaround(
        ".async_clients:RetriedClusterPipeline", "all",
        "the asyncio cluster pipeline reads its retry count from the client (zero "
        "here) and, retrying, closes the whole client and waits a fixed 0.25 s",
        "the pipeline retries under the client's Retry"),
    Workaround(
        ".async_pubsub:_Reader.next_message", "6.4-7.2",
        "the asyncio PubSub takes an smessage (sharded pub/sub) for a subscription "
        "confirmation, and leaves it out with them",
        "the lowest supported redis-py is 7.3, whose asyncio PubSub knows smessage"),
    Workaround(
        ".async_pubsub:AsyncSubscription", "all",
        "redis-py's asyncio RedisCluster has no pub/sub: each shard's channels are "
        "read on a connection to that shard, one SSUBSCRIBE per slot",
        "redis.asyncio.RedisCluster gains a sharded pubsub()"),
    Workaround(
        ".async_clients:_memory", "all",
        "fakeredis's asyncio connection (2.38-2.41, not redis-py) drops its fake "
        "socket without closing it, and the embedded server keeps a closed "
        "connection's subscriptions",
        "fakeredis closes the socket in its asyncio disconnect()"),
    Workaround(
        ".redis_py:pool_usage", "all",
        "redis-py's pools give no public count of the connections in use and idle "
        "(the counts of its own metrics, 7.2+, go to the global meter only)",
        "redis-py's pools count their connections publicly"),
    # Integrations (outside the connection core) --------------------------------
    Workaround(
        "flask_core_redis.integrations._command_log:_stacked_commands", "all",
        "a Cluster pipeline, blocking or asyncio, gives no public list of the commands "
        "it holds: the debug toolbar's panel reads its execution strategy's private "
        "_command_queue",
        "redis-py's Cluster pipelines list their commands publicly"),
    Workaround(
        "flask_core_redis.integrations.worker:_STOP_WAITS", "6.4-8.1",
        "PubSubWorkerThread.stop() takes a timeout and joins the thread from 8.2; "
        "before, it returns at once",
        "the lowest supported redis-py is 8.2"),
)


# Connections -------------------------------------------------------------------

def disconnect_cause(connection: object, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any]) -> BaseException | None:
    """Why ``connection`` is being dropped by ``disconnect(*args, **kwargs)``:
    the error redis-py passes along or, since it often calls ``disconnect()``
    bare from an ``except`` block, the error being handled if it came out of
    this very connection (a topology refresh closes healthy connections while
    handling another node's error). None for a deliberate close. redis-py: all."""
    passed = kwargs.get("error") or next(
        (arg for arg in args if isinstance(arg, BaseException)), None)
    if passed is not None:
        return passed
    handled = sys.exc_info()[1]
    if isinstance(handled, RedisError | OSError) and raised_by(handled, connection):
        return handled
    return None


def raised_by(error: BaseException, owner: object) -> bool:
    """Whether a method of ``owner`` is on ``error``'s traceback."""
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_locals.get("self") is owner:
            return True
        trace = trace.tb_next
    return False


# Pools -------------------------------------------------------------------------

class RedactedRepr:
    """A pool repr that shows where it connects, never its credentials.
    redis-py 6.4-7.3 prints every connection keyword, the password too, and
    embeds that repr in errors (a sentinel's, in MasterNotFoundError); 7.4
    masks them. Goes when the lowest supported redis-py is 7.4."""

    connection_kwargs: dict[str, Any]
    connection_class: type

    def __repr__(self) -> str:
        kwargs = self.connection_kwargs
        address = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return (f"<{type(self).__name__}({self.connection_class.__name__} {address}"
                f" db={kwargs.get('db', 0)})>")


#: What redis-py's blocking pool raises when its wait for a connection ends
#: (redis-py: all, sync and asyncio).
_WAIT_ENDED = "No connection available."


def is_pool_wait_ended(error: BaseException) -> bool:
    """Whether ``error`` is a blocking pool's ended wait, which redis-py
    raises as a bare ConnectionError known only by its text."""
    return (isinstance(error, ConnectionError) and not isinstance(error, MaxConnectionsError)
            and str(error) == _WAIT_ENDED)


class WaitsThenRaisesMaxConnections:
    """A blocking pool whose ended wait raises MaxConnectionsError, as a full
    plain pool does: redis-py (all) raises a bare ConnectionError, which the
    retry policy would take for an outage and Cluster for a failed node."""

    max_connections: int
    timeout: float | None

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[misc]
        except ConnectionError as error:
            _raise_if_wait_ended(self, error)
            raise


class AsyncWaitsThenRaisesMaxConnections:
    """:class:`WaitsThenRaisesMaxConnections` for an asyncio blocking pool."""

    max_connections: int
    timeout: float | None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[misc]
        except ConnectionError as error:
            _raise_if_wait_ended(self, error)
            raise


#: What redis-py 6.4-7.1's asyncio pool raises when every connection is in use.
_ASYNC_POOL_FULL = "Too many connections"


class AsyncPoolFullIsMaxConnections:
    """An asyncio pool that raises MaxConnectionsError when every connection
    is in use, as the blocking one does: redis-py 6.4-7.1's raises a bare
    ConnectionError, which the retry policy would take for an outage (and
    retry until a connection is free). Goes when the lowest supported
    redis-py is 7.2."""

    def get_available_connection(self) -> Any:
        try:
            return super().get_available_connection()  # type: ignore[misc]
        except ConnectionError as error:
            if type(error) is ConnectionError and str(error) == _ASYNC_POOL_FULL:
                raise MaxConnectionsError(_ASYNC_POOL_FULL) from None
            raise


def _raise_if_wait_ended(pool: Any, error: ConnectionError) -> None:
    if is_pool_wait_ended(error):
        raise MaxConnectionsError(
            f"all {pool.max_connections} connections of the pool stayed in use "
            f"for {pool.timeout} s") from None


# Cluster -----------------------------------------------------------------------

def names_nodes(target_nodes: Any) -> bool:
    """Whether a command's ``target_nodes`` names nodes, rather than being
    absent or a flag (``RedisCluster.PRIMARIES`` ...) that the slot map
    resolves again on each try. redis-py does not retry a command that names
    nodes; a client that retries commands itself follows the same rule."""
    if target_nodes is None:
        return False
    return not (isinstance(target_nodes, str) and target_nodes in RedisCluster.NODE_FLAGS)


def redis_error_of(error: RedisClusterException,
                   handled_by_the_caller: BaseException | None) -> BaseException | None:
    """The RedisError to raise for ``error``, redis-py's "cannot reach the
    cluster" exception (no RedisError, redis-py: all): the error it wraps if
    no node let us in, a ConnectionError if it wraps an outage, None for a
    misuse (a command that names no key, say), which stays as it is.

    The wrapped error is the cause or, for a raise inside the node error's
    handler without ``from``, the context; unless that context is
    ``handled_by_the_caller``, an error the caller was handling already."""
    context = error.__context__
    cause = error.__cause__ or (context if context is not handled_by_the_caller else None)
    if isinstance(cause, NEVER_RETRIED):
        return cause
    if isinstance(cause, ConnectionError | TimeoutError | OSError):
        return ConnectionError(str(error))
    return None


def as_redis_errors(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(...)``, with redis-py's "cannot reach the cluster" exception
    turned into the error it wraps (:func:`redis_error_of`): a
    ConnectionError to retry and to report as an outage, or an
    AuthenticationError to raise."""
    handled_by_the_caller = sys.exc_info()[1]
    try:
        return call(*args, **kwargs)
    except RedisClusterException as error:
        _raise_translation(error, handled_by_the_caller)
        raise


async def as_redis_errors_async(call: Callable[..., Awaitable[T]], *args: Any,
                                **kwargs: Any) -> T:
    """:func:`as_redis_errors` for a coroutine function."""
    handled_by_the_caller = sys.exc_info()[1]
    try:
        return await call(*args, **kwargs)
    except RedisClusterException as error:
        _raise_translation(error, handled_by_the_caller)
        raise


def _raise_translation(error: RedisClusterException,
                       handled_by_the_caller: BaseException | None) -> None:
    translated = redis_error_of(error, handled_by_the_caller)
    if translated is None:
        return
    if isinstance(translated, NEVER_RETRIED):  # no node let us in
        raise translated from None
    raise translated from error


def pipeline_under_policy(pipe: Any, retry: Retry) -> Any:
    """``pipe``, a cluster pipeline, retried by ``retry``'s count and raising
    RedisErrors: redis-py's pipeline reads its retry count from its client
    when it executes (redis-py: all), and raises RedisClusterException, no
    RedisError, when it cannot reach the cluster."""
    pipe.retry = retry
    pipe.execute = functools.partial(as_redis_errors, pipe.execute)
    return pipe


# asyncio connections -------------------------------------------------------------

class PasswordedSSLConnection(AsyncSSLConnection):
    """An asyncio TLS connection that takes ``ssl_password`` (the passphrase
    of an encrypted key file) and ``ssl_ca_path``, as redis-py's blocking one
    does: its asyncio one takes them from redis-py 7.2, not in 6.4-7.1. Goes
    when the lowest supported redis-py is 7.2."""

    def __init__(self, *, ssl_password: str | None = None, ssl_ca_path: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ssl_password, self._ssl_ca_path = ssl_password, ssl_ca_path

    def _connection_arguments(self) -> Mapping[str, Any]:
        # The plain connection's: its TLS one's would build a context that
        # cannot read the key.
        return {**AsyncConnection._connection_arguments(self), "ssl": self._context()}

    def _context(self) -> ssl.SSLContext:
        wanted = self.ssl_context  # redis-py's RedisSSLContext: what was asked for
        context = ssl.create_default_context()
        context.check_hostname = wanted.check_hostname
        context.verify_mode = wanted.cert_reqs
        if wanted.certfile and wanted.keyfile:
            context.load_cert_chain(wanted.certfile, wanted.keyfile, self._ssl_password)
        if wanted.ca_certs or wanted.ca_data or self._ssl_ca_path:
            context.load_verify_locations(cafile=wanted.ca_certs, capath=self._ssl_ca_path,
                                          cadata=wanted.ca_data)
        if wanted.min_version is not None:
            context.minimum_version = wanted.min_version
        if wanted.ciphers is not None:
            context.set_ciphers(wanted.ciphers)
        return context


#: The asyncio TLS connection to use: redis-py's own where it takes every
#: option its blocking one does.
ASYNC_SSL_CONNECTION: type[AsyncConnection] = (
    AsyncSSLConnection if "ssl_password" in inspect.signature(AsyncSSLConnection).parameters
    else PasswordedSSLConnection)


def _stream_writer(connection: AsyncConnection) -> Any:
    """The connection's stream writer (redis-py's private ``_writer``, all
    supported releases); None while it is not connected."""
    return getattr(connection, "_writer", None)


def abort_stream(connection: AsyncConnection) -> None:
    """Abort ``connection``'s transport, so that its ``disconnect()`` ends at
    once: a TLS close waits for the server's own by default, up to half a
    minute from a server that hangs. The socket closes in the loop's next turn."""
    writer = _stream_writer(connection)
    if writer is not None:
        writer.transport.abort()


def socket_of(connection: AsyncConnection) -> Any:
    """The socket under ``connection``'s transport; None while it is not
    connected."""
    writer = _stream_writer(connection)
    return writer.transport.get_extra_info("socket") if writer is not None else None


# Pools -------------------------------------------------------------------------------

def pool_usage(client: Any) -> tuple[int, int]:
    """How many connections of ``client``'s pools are in use and how many
    idle: one pool, or every node's on a Cluster, blocking or asyncio."""
    nodes_manager = getattr(client, "nodes_manager", None)
    if nodes_manager is None:
        return _pool_usage(getattr(client, "connection_pool", None))
    used = idle = 0
    for node in list(nodes_manager.nodes_cache.values()):
        if hasattr(node, "_free"):  # an asyncio Cluster node: its own connections
            node_idle = len(node._free)
            node_used = len(node._connections) - node_idle
        else:
            node_used, node_idle = _pool_usage(
                getattr(node.redis_connection, "connection_pool", None))
        used, idle = used + node_used, idle + node_idle
    return used, idle


def _pool_usage(pool: Any) -> tuple[int, int]:
    if pool is None:
        return 0, 0
    if hasattr(pool, "_in_use_connections"):
        return len(pool._in_use_connections), len(pool._available_connections)
    # A blocking pool: every connection made, and a queue of the idle ones
    # among placeholders (None).
    idle = sum(connection is not None for connection in list(pool.pool.queue))
    return len(pool._connections) - idle, idle
