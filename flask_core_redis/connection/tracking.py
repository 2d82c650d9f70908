"""Server-assisted client-side caching: a thread that hears, from every
master, which keys under one prefix changed.

Each master gets one connection of its own (RESP2, whatever the app's
``protocol``), set up with ``CLIENT TRACKING ON REDIRECT <its own id> BCAST
PREFIX <prefix>`` and subscribed to ``__redis__:invalidate``: every write,
delete, expiry or eviction of a key under the prefix, by any client, is
sent to it, and the tracking lives exactly as long as the connection that
hears it (a tracking connection that dies silently stops sending, and here
that is the same connection).

Delivery is proven, not assumed: each connection is PINGed every
``ping_seconds``, and a PING's answer arrives after every invalidation the
server sent before it, so when it is read every change made before the PING
was sent has been handed to the sink. :attr:`KeyTracking.proven_at` is the
oldest such time over all masters (``-inf`` while any master is unproven);
a reader of local copies compares it with its own bound.

Whatever may have lost an invalidation flushes the sink: a connection that
fails, a PING left unanswered too long (a hung server), a master that
appears or goes (a Cluster failover or resharding, a Sentinel failover,
which shuts the old master's connections down), and each new start."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from redis.cluster import RedisCluster
from redis.exceptions import RedisError

from ..errors import describe_error
from .redis_py import as_redis_errors

logger = logging.getLogger("flask_core_redis")

__all__ = ["CHANNEL", "KeyTracking", "TrackingSink", "masters_of"]

#: The channel a RESP2 connection hears invalidations on.
CHANNEL = b"__redis__:invalidate"
#: Delays before a lost connection is opened again: doubling, up to this.
RECONNECT_CAP_SECONDS = 2.0
#: How long close() waits for the thread.
STOP_SECONDS = 2.0


class TrackingSink(Protocol):
    """What hears the changes: both are called from the tracking thread."""

    def invalidated(self, keys: list[str]) -> None:
        """These keys changed (names decoded as UTF-8, undecodable bytes escaped)."""

    def flushed(self) -> None:
        """Anything may have changed: drop every local copy."""


#: The pools of a client's masters by name; ``refresh`` asks the servers first.
Masters = Callable[[bool], Mapping[str, Any]]


def masters_of(client: Callable[[], Any]) -> Masters:
    """The masters of the client ``client()`` gives, asked for in the tracking
    thread (building a Cluster client connects): one pool for a standalone
    or Sentinel client; each primary's on a Cluster client, the slot map
    read again when ``refresh``."""

    def masters(refresh: bool) -> Mapping[str, Any]:
        built = client()
        if not isinstance(built, RedisCluster):
            return {"": built.connection_pool}
        if refresh:
            as_redis_errors(built.nodes_manager.initialize)
        return {node.name: _NodeConnections(node.redis_connection.connection_pool)
                for node in built.get_primaries()}

    return masters


class _NodeConnections:
    """A Cluster node's connections for tracking, made like its pool's but
    kept out of it: redis-py 6.4's slot-map refresh disconnects the pools of
    the nodes it asks, connections in use included."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def get_connection(self) -> Any:
        # Not make_connection(): that counts against the pool's limit for good.
        connection = self._pool.connection_class(**self._pool.connection_kwargs)
        connection.connect()
        return connection

    def release(self, connection: Any) -> None:
        connection.disconnect()


class _Link:
    """One master's tracking connection, and what its PINGs proved."""

    def __init__(self, pool: Any, prefix: str) -> None:
        self.pool = pool
        self.connection = pool.get_connection()
        #: monotonic time the last answered PING was sent; -inf: none yet.
        self.proven_at = -math.inf
        self._pings: list[float] = []  # send times of unanswered PINGs, oldest first
        try:
            self._call("CLIENT", "TRACKING", "ON", "REDIRECT", self._call("CLIENT", "ID"),
                       "BCAST", "PREFIX", prefix)
            self._call("SUBSCRIBE", CHANNEL)
        except BaseException:
            self.close()
            raise

    def _call(self, *args: Any) -> Any:
        self.connection.send_command(*args, check_health=False)
        return self.connection.read_response()

    def ping(self, now: float) -> None:
        self.connection.send_command("PING", check_health=False)
        self._pings.append(now)

    def waiting_since(self) -> float:
        """When the oldest unanswered PING was sent (inf: none is)."""
        return self._pings[0] if self._pings else math.inf

    def last_ping(self) -> float:
        return self._pings[-1] if self._pings else self.proven_at

    def on_the_master(self) -> bool | None:
        """Whether the connection is open to the master its pool serves
        (None: the pool cannot say now). Always True but on Sentinel, whose
        pools know where the sentinels put the master."""
        check = getattr(self.pool, "serves_the_master", None)
        return True if check is None else check(self.connection)

    def fileno(self) -> int:
        return self.connection._sock.fileno()  # type: ignore[no-any-return]

    def drain(self, sink: TrackingSink, encoding: str) -> None:
        """Hand every message already here to ``sink``, in order."""
        while self.connection.can_read(timeout=0):
            kind, *rest = self.connection.read_response()
            if kind == b"message":
                keys = rest[1]
                if keys is None:  # FLUSHALL, FLUSHDB: everything
                    sink.flushed()
                else:
                    sink.invalidated([key.decode(encoding, "surrogateescape") for key in keys])
            elif kind == b"pong":
                self.proven_at = self._pings.pop(0)

    def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            self.connection.disconnect()
        with contextlib.suppress(RedisError, OSError):
            self.pool.release(self.connection)


def bounds(max_stale: float, connect_timeout: float) -> dict[str, float]:
    """:class:`KeyTracking`'s timings for a reader that serves local copies at
    most ``max_stale`` seconds behind the server: a PING every third of it (so
    an answer within that third keeps the proof fresh), a connection whose
    PING waits longer than three bounds and a connect timeout counted lost."""
    return {"ping_seconds": max_stale / 3, "dead_seconds": 3 * max_stale + connect_timeout}


class KeyTracking:
    """Invalidations of every key under ``prefix`` on every master of
    ``masters``, handed to ``sink`` by a thread of its own (see the module's
    docstring). A PING goes to each master every ``ping_seconds``; one
    unanswered for ``dead_seconds`` counts as a lost connection. With
    ``topology_seconds``, the masters are asked for again that often (a
    Cluster's slot map), and the proof is no older than the last answer."""

    def __init__(self, masters: Masters, prefix: str, sink: TrackingSink, *,
                 ping_seconds: float, dead_seconds: float,
                 topology_seconds: float | None = None, name: str = "",
                 encoding: str = "utf-8", encoding_errors: str = "strict") -> None:
        self._masters = masters
        self._encoding, self._encoding_errors = encoding, encoding_errors
        # Written to by close(), so that a wait on the connections ends at once.
        self._wake_read, self._wake_write = socket.socketpair()
        self._prefix = prefix
        self._sink = sink
        self._ping_seconds = ping_seconds
        self._dead_seconds = dead_seconds
        self._topology_seconds = topology_seconds
        self._name = name
        self._links: dict[str, _Link] = {}
        self._topology_at = -math.inf
        #: monotonic time up to which every change is known to have reached
        #: the sink; -inf while any master is unproven.
        self.proven_at = -math.inf
        self._stopping = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"flask-core-redis tracking {name}".rstrip())
        _ALIVE.add(self)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<KeyTracking {self._name} masters={len(self._links)}>"

    @property
    def running(self) -> bool:
        """False once closed, and in a child forked from the process that
        started it (the fork handler stops it there)."""
        return not self._stopping.is_set()

    def heard_as(self, name: str) -> str:
        """How an invalidation of the key ``name`` is reported: ``name``
        itself, unless the client's ``encoding_errors`` changes it on the way
        to Redis (then a copy kept under ``name`` would never be dropped)."""
        return name.encode(self._encoding, self._encoding_errors).decode(
            self._encoding, "surrogateescape")

    def close(self) -> None:
        """Stop the thread and close its connections; the sink is flushed.
        Waits for the thread at most ``STOP_SECONDS`` (a connect under
        way ends by its own timeout)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        if self._thread is not threading.current_thread() and self._pid == os.getpid():
            self._thread.join(STOP_SECONDS)

    def _forget_after_fork(self) -> None:
        # The parent's connections and thread are not this process's: drop
        # them without a word to the server (the parent still uses them).
        self._stopping.set()
        self._links = {}
        self.proven_at = -math.inf
        self._wake_read.close()
        self._wake_write.close()

    # The thread ------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        outage: str | None = None
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception as error:  # any failure: lose everything, try again
                self._lose()
                failures += 1
                if outage is None:
                    outage = describe_error(error)
                    logger.warning("[%s] key tracking of %s*: invalidations lost, local "
                                   "copies dropped and not served until it is back: %s",
                                   self._name, self._prefix, outage)
                self._stopping.wait(min(RECONNECT_CAP_SECONDS, 0.05 * 2 ** min(failures, 6)))
                continue
            if outage is not None and self._links and self.proven_at > -math.inf:
                logger.info("[%s] key tracking of %s*: invalidations are back",
                            self._name, self._prefix)
                outage, failures = None, 0
        self._lose()
        self._wake_read.close()
        self._wake_write.close()

    def _step(self) -> None:
        now = time.monotonic()
        if not self._links or self._topology_due(now):
            self._follow_topology(now)
        for link in self._links.values():
            if now - link.waiting_since() > self._dead_seconds:
                raise OSError("no answer to PING on the invalidation connection")
            if now - link.last_ping() >= self._ping_seconds:
                link.ping(now)
        self._wait(self._next_due(now) - time.monotonic())
        for link in self._links.values():
            link.drain(self._sink, self._encoding)
        proofs = [self._proof(link) for link in self._links.values()]
        if self._topology_seconds is not None:
            proofs.append(self._topology_at)
        self.proven_at = min(proofs, default=-math.inf)

    def _proof(self, link: _Link) -> float:
        """What ``link``'s PINGs prove, if it is on the master: a link left on
        a former master (a Sentinel failover) hears nothing of the writes
        that matter, and is opened again; while the master is unconfirmed,
        it proves nothing."""
        on_the_master = link.on_the_master()
        if on_the_master is False:
            raise OSError("the master moved: the invalidation connection follows it")
        return link.proven_at if on_the_master else -math.inf

    def _topology_due(self, now: float) -> bool:
        return (self._topology_seconds is not None
                and now - self._topology_at >= self._topology_seconds)

    def _follow_topology(self, now: float) -> None:
        """Open a link to every master there is now, close those to former
        masters; if that changed anything, flush: a master this process did
        not hear may have taken writes."""
        pools = self._masters(bool(self._links) or self._topology_seconds is not None)
        changed = pools.keys() != self._links.keys()
        if changed:
            self.proven_at = -math.inf
            for name in self._links.keys() - pools.keys():
                self._links.pop(name).close()
            for name in pools.keys() - self._links.keys():
                self._links[name] = _Link(pools[name], self._prefix)
            self._sink.flushed()
        self._topology_at = now

    def _next_due(self, now: float) -> float:
        due = min((link.last_ping() + self._ping_seconds for link in self._links.values()),
                  default=now + self._ping_seconds)
        if self._topology_seconds is not None:
            due = min(due, self._topology_at + self._topology_seconds)
        return due

    def _wait(self, seconds: float) -> None:
        """Until a connection has something to read, close() is called, or
        ``seconds`` pass."""
        if seconds > 0 and self._links:
            readable = [link.fileno() for link in self._links.values()]
            select.select([self._wake_read.fileno(), *readable], [], [],
                          min(seconds, self._ping_seconds))

    def _lose(self) -> None:
        """Every connection closed, every local copy flushed."""
        self.proven_at = -math.inf
        links, self._links = self._links, {}
        for link in links.values():
            link.close()
        self._sink.flushed()


_ALIVE: weakref.WeakSet[KeyTracking] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tracking in list(_ALIVE):
        tracking._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
