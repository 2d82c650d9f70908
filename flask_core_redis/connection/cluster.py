"""Redis Cluster: a client whose command retries wait as the policy says."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import Connection, SSLConnection
from redis.exceptions import ConnectionError, RedisClusterException, TimeoutError
from redis.retry import Retry

from ..config import Settings
from .connections import evented_class
from .events import ConnectionEvents
from .pools import pool_class
from .retry import NEVER_RETRIED, build_retry
from .tls import ssl_kwargs

T = TypeVar("T")


class RetryingRedisCluster(RedisCluster):
    """RedisCluster whose command retries wait as the policy says.

    redis-py's own cluster loop retries without any delay, which burns every
    attempt before a failover can finish. Here that loop is given no retries and
    each command runs under the project's ``Retry`` instead. Commands sent to
    nodes named in ``target_nodes`` are not retried, as in redis-py: after a
    topology change those nodes may no longer be the right ones. A node flag
    is resolved anew on each try, and retried."""

    def __init__(self, *args: Any, command_retry: Retry, **kwargs: Any) -> None:
        self.command_retry = command_retry  # the constructor already sends COMMAND
        super().__init__(*args, **{**kwargs, "retry": Retry(NoBackoff(), 0)})

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction=transaction, shard_hint=shard_hint)
        # The pipeline reads its retry count from here when it executes: give
        # it the policy's count rather than the zero this client's loop uses.
        pipe.retry = self.command_retry
        # Like a command, a pipeline that cannot reach the cluster raises the
        # ConnectionError it wraps, not redis-py's RedisClusterException.
        pipe.execute = functools.partial(as_redis_errors, pipe.execute)
        return pipe

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        run = functools.partial(as_redis_errors, super().execute_command, *args, **kwargs)
        if names_nodes(kwargs.get("target_nodes")):
            return run()
        return self.command_retry.call_with_retry(run, lambda error: None)


def names_nodes(target_nodes: Any) -> bool:
    """Whether a command's ``target_nodes`` names nodes, rather than being
    absent or a flag (``RedisCluster.PRIMARIES`` ...) that the slot map
    resolves again on each try."""
    if target_nodes is None:
        return False
    return not (isinstance(target_nodes, str) and target_nodes in RedisCluster.NODE_FLAGS)


def as_redis_errors(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(...)``, with redis-py's "cannot reach the cluster" exception, which
    is no RedisError, turned into the error it wraps: a ConnectionError to
    retry and to report as an outage, or an AuthenticationError to raise."""
    handled_by_the_caller = sys.exc_info()[1]
    try:
        return call(*args, **kwargs)
    except RedisClusterException as error:
        # redis-py 6.x raises it inside the handler of the node's error
        # without chaining it, so the error is the context, not the cause;
        # unless that context is an error the caller was handling already.
        context = error.__context__
        cause = error.__cause__ or (context if context is not handled_by_the_caller else None)
        if isinstance(cause, NEVER_RETRIED):  # no node let us in
            raise cause from None
        if isinstance(cause, ConnectionError | TimeoutError | OSError):
            raise ConnectionError(str(error)) from error
        raise  # a misuse (a command that names no key, say): not an outage


def build_cluster_client(settings: Settings, events: ConnectionEvents,
                         kwargs: dict[str, Any]) -> RedisCluster:
    command_retry = build_retry(settings, events, RedisCluster.ERRORS_ALLOW_RETRY)

    def connect() -> RedisCluster:
        return as_redis_errors(RetryingRedisCluster, command_retry=command_retry,
                               **cluster_kwargs(settings, events, kwargs))

    # RedisCluster reads the slot map while it is constructed; a cluster that
    # is down is retried like any command, then reported as a ConnectionError.
    return command_retry.call_with_retry(connect, lambda error: None)


def cluster_kwargs(settings: Settings, events: ConnectionEvents,
                   kwargs: dict[str, Any]) -> dict[str, Any]:
    """``RedisCluster``'s arguments for ``settings``: ``kwargs`` plus the nodes,
    the connection class that reports connection events, TLS and the pool."""
    (first_host, first_port), *others = settings.nodes
    host = f"[{first_host}]" if ":" in first_host else first_host
    # Not ssl=True: that would swap the evented connection class for redis-py's.
    tls = ssl_kwargs(settings) if settings.ssl else {}
    # Given a URL (without credentials: those stay in kwargs), RedisCluster
    # builds each node's pool from the keyword arguments, connection_class
    # included; given only startup nodes, it would drop connection_class.
    # require_full_coverage=False: a client made while a slot has no master
    # (mid-failover) serves the other slots, as one made earlier does,
    # instead of failing to start; the servers' own setting still decides.
    return {"url": f"redis://{host}:{first_port}", "require_full_coverage": False,
            "startup_nodes": [ClusterNode(h, p) for h, p in others],
            "connection_class": evented_class(SSLConnection if settings.ssl else Connection,
                                              events),
            "connection_pool_class": pool_class(settings), **tls, **kwargs}
