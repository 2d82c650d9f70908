"""Redis Cluster: a client whose command retries wait as the policy says
(a redis-py workaround, listed in :mod:`.redis_py` with the pieces it uses)."""

from __future__ import annotations

import functools
import threading
from typing import Any

from redis.backoff import NoBackoff
from redis.cluster import PRIMARY, ClusterNode, RedisCluster
from redis.connection import Connection, SSLConnection
from redis.retry import Retry

from ..config import Settings
from .connections import evented_class
from .events import ConnectionEvents
from .pools import pool_class
from .redis_py import as_redis_errors, names_nodes, pipeline_under_policy
from .retry import build_retry
from .tls import ssl_kwargs


class RetryingRedisCluster(RedisCluster):
    """RedisCluster whose command retries wait as the policy says.

    redis-py's own cluster loop (all supported releases) retries without any
    delay, which burns every attempt before a failover can finish. Here that
    loop is given no retries and each command runs under the project's
    ``Retry`` instead. Commands sent to nodes named in ``target_nodes`` are
    not retried, as in redis-py: after a topology change those nodes may no
    longer be the right ones. A node flag is resolved anew on each try, and
    retried."""

    def __init__(self, *args: Any, command_retry: Retry, **kwargs: Any) -> None:
        self.command_retry = command_retry  # the constructor already sends COMMAND
        super().__init__(*args, **{**kwargs, "retry": Retry(NoBackoff(), 0)})

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        # The policy's count rather than the zero this client's loop uses; like
        # a command, a pipeline that cannot reach the cluster raises the
        # ConnectionError it wraps, not redis-py's RedisClusterException.
        return pipeline_under_policy(
            super().pipeline(transaction=transaction, shard_hint=shard_hint), self.command_retry)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        run = functools.partial(as_redis_errors, super().execute_command, *args, **kwargs)
        if names_nodes(kwargs.get("target_nodes")):
            return run()
        return self.command_retry.call_with_retry(run, lambda error: None)


def build_cluster_client(settings: Settings, events: ConnectionEvents,
                         kwargs: dict[str, Any]) -> RedisCluster:
    command_retry = build_retry(settings, events, RedisCluster.ERRORS_ALLOW_RETRY)

    def connect() -> RedisCluster:
        client = as_redis_errors(RetryingRedisCluster, command_retry=command_retry,
                                 **cluster_kwargs(settings, events, kwargs))
        MasterChanges(events, settings.address).watch(client.nodes_manager)
        return client

    # RedisCluster reads the slot map while it is constructed; a cluster that
    # is down is retried like any command, then reported as a ConnectionError.
    return command_retry.call_with_retry(connect, lambda error: None)


class MasterChanges:
    """Emits a ``failover`` event (outcome ``moved``) when a read of one
    Cluster client's slot map finds other masters than its last read: a
    failover the client followed. A change is told once, however many of
    the client's threads or tasks read the map at the same time; and the
    masters are those read, not those redis-py's redirects patched in
    between (a MOVED after a failover marks the new master in place)."""

    def __init__(self, events: ConnectionEvents, address: str) -> None:
        self._events = events
        self._address = address
        self._read: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    @staticmethod
    def masters(nodes_manager: Any) -> frozenset[str]:
        """The masters ``nodes_manager`` knows of now, by name."""
        return frozenset(node.name for node in list(nodes_manager.nodes_cache.values())
                         if node.server_type == PRIMARY)

    def read(self, nodes_manager: Any) -> None:
        """Note the masters of a read of the slot map that just ended; emit
        the event if they are not those of the last read (and both are known)."""
        now = self.masters(nodes_manager)
        if not now:
            return
        with self._lock:
            before, self._read = self._read, now
        if before and now != before:
            self._events.emit("failover", address=self._address, outcome="moved",
                              detail=f"the Cluster's masters changed: {len(before - now)} "
                                     f"left, {len(now - before)} came")

    def watch(self, nodes_manager: Any) -> None:
        """Note the masters after every ``initialize`` of a blocking client's
        nodes manager, the one that made it first. (The asyncio one's has
        slots: its client notes them instead.)"""
        self.read(nodes_manager)
        initialize = nodes_manager.initialize

        def initialize_reporting(*args: Any, **kwargs: Any) -> Any:
            result = initialize(*args, **kwargs)
            self.read(nodes_manager)
            return result

        nodes_manager.initialize = initialize_reporting


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
