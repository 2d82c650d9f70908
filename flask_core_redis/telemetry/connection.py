"""The connection's instruments: what a registration's connection events,
pools and health checks say, as metrics."""

from __future__ import annotations

import builtins
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import redis.exceptions
import redis.sentinel

from ..connection import ConnectionEvent
from .instruments import Telemetry

#: The error types an attribute may name: redis-py's exceptions (its
#: Sentinel's ``MasterNotFoundError`` included) and the operating system's;
#: any other is ``other``.
ERROR_TYPES = frozenset(
    name for module in (redis.exceptions, redis.sentinel, builtins)
    for name, value in vars(module).items()
    if inspect.isclass(value) and issubclass(value, redis.exceptions.RedisError | OSError))

EVENT_KINDS = ("connect", "disconnect", "error", "retry", "sentinel", "failover")


def error_type(error: BaseException | None) -> str:
    """The attribute value of ``error``'s type (``none`` without one)."""
    return "none" if error is None else type(error).__name__


class ConnectionTelemetry:
    """Records the connection instruments of one registration: subscribed to
    its events, asked by its health check, and reading its pools when the
    app's metric reader collects (``pools()`` gives ``(client kind, in use,
    idle)`` for each client kind, or None once the registration is gone)."""

    def __init__(self, telemetry: Telemetry, topology: str,
                 pools: Callable[[], Iterable[tuple[str, int, int]] | None],
                 client_kinds: Iterable[str]) -> None:
        self._topology = topology
        self._events = telemetry.counter(
            "connection.events", "{event}", "Connection events: connects, disconnects, "
            "errors, retries, Sentinel subscriptions and failovers",
            {"event": EVENT_KINDS, "error.type": ERROR_TYPES | {"none"}})
        self._retries = telemetry.counter(
            "connection.retries", "{retry}", "Retries of failed commands and connects, "
            "counted when the call ends, by its last error and whether a retry succeeded",
            {"error.type": ERROR_TYPES, "outcome": ("recovered", "gave_up")})
        self._failovers = telemetry.counter(
            "connection.failovers", "{failover}", "Failovers followed: a Sentinel "
            "master that moved, a Cluster whose masters changed; and Sentinel failovers "
            "that started or ended without a promotion",
            {"topology": ("sentinel", "cluster"), "outcome": ("moved", "started", "ended")})
        self._health = telemetry.histogram(
            "connection.health.duration", "s", "How long each health check took, by "
            "whether it found the registration healthy", {"ok": bool})
        self._healthy: bool | None = None
        kinds = frozenset(client_kinds)

        def observe_pools() -> list[tuple[float, dict[str, Any]]] | None:
            usage = pools()
            if usage is None:
                return None
            return [(count, {"client": kind, "state": state})
                    for kind, used, idle in usage
                    for count, state in ((used, "used"), (idle, "idle"))]

        telemetry.gauge("connection.pool.connections", "{connection}", "Connections of "
                        "the registration's pools, in use and idle, by client kind",
                        observe_pools, {"client": kinds, "state": ("used", "idle")})

        # Held weakly: the registration's events hold this object, and the
        # meter's callbacks must not hold them (nor its counters) once it is gone.
        me = weakref.ref(self)

        def observe_health() -> list[tuple[float, dict[str, Any]]] | None:
            recording = me()
            if recording is None or pools() is None:
                return None
            healthy = recording._healthy
            return [] if healthy is None else [(int(healthy), {})]

        # Several apps of one prefix: healthy only if every one is.
        telemetry.gauge("connection.health.status", "1", "1 if the last health check "
                        "found the registration healthy, 0 if not", observe_health,
                        combine=min)

    def event(self, event: ConnectionEvent) -> None:
        """Record one connection event (a subscriber of the registration's)."""
        if event.kind == "retried":
            self._retries.add(event.attempt or 0, outcome=event.outcome,
                              **{"error.type": error_type(event.error)})
            return
        self._events.add(1, event=event.kind, **{"error.type": error_type(event.error)})
        if event.kind == "failover":
            self._failovers.add(1, topology=self._topology, outcome=event.outcome)

    def health_checked(self, ok: bool, seconds: float) -> None:
        """Record a health check that found ``ok`` in ``seconds``."""
        self._healthy = ok
        self._health.record(seconds, ok=ok)
