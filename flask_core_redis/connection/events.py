"""Connection events: the one place they are raised and the one place they are
logged. Every client an app builds reports to that app's :class:`ConnectionEvents`;
the logger ``flask_core_redis`` is its first subscriber."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import describe_error

#: ``sentinel``: a Sentinel subscription opened or lost; ``failover``: the
#: master moved, or a failover of it started or ended without a promotion;
#: ``retried``: the retries of one call ended.
EventKind = Literal["connect", "disconnect", "error", "retry", "retried", "sentinel",
                    "failover"]

logger = logging.getLogger("flask_core_redis")


@dataclass(frozen=True)
class ConnectionEvent:
    """Something happened to a connection of one registration (``prefix``)."""

    #: What happened: ``connect``, ``disconnect``, ``error``, ``retry``,
    #: ``retried`` (the retries of one call ended), ``sentinel`` (a Sentinel
    #: subscription opened or lost) or ``failover`` (a master moved, or a
    #: failover of it started or ended).
    kind: EventKind
    #: The config prefix of the registration whose connection it was (``REDIS``).
    prefix: str
    #: Where, without credentials: a connection's ``host:port``
    #: (``unix://<path>`` for a unix socket); for a command's ``retry``, the
    #: registration's address (:attr:`Settings.address`); ``sentinel
    #: host:port`` for a sentinel; ``socketio:<channel>`` for the Socket.IO
    #: manager's listener; empty when no one address applies.
    address: str = ""
    #: The error, for ``error``, for a ``disconnect`` that a failure caused,
    #: for a ``sentinel`` subscription lost, and for ``retried`` (the last
    #: failure); None otherwise.
    error: BaseException | None = None
    #: For ``retry``: which retry this is, from 1; for ``retried``: how many
    #: retries the call made.
    attempt: int | None = None
    #: For ``retry``: the delay before it, in milliseconds.
    delay_ms: float | None = None
    #: For ``sentinel`` and ``failover``: what happened, in words.
    detail: str | None = None
    #: For ``retried``: ``recovered`` (a retry succeeded) or ``gave_up``; for
    #: ``failover``: ``moved`` (a Sentinel master moved, or a Cluster's
    #: masters changed), ``started`` or ``ended`` (without a promotion).
    outcome: str | None = None


Subscriber = Callable[[ConnectionEvent], None]


class ConnectionEvents:
    """Fans events out to subscribers. Shared, never copied: redis-py deep-copies
    its retry objects, and every copy must still report here."""

    def __init__(self, prefix: str) -> None:
        #: The config prefix of the registration these events are about.
        self.prefix = prefix
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> ConnectionEvents:
        return self

    def __copy__(self) -> ConnectionEvents:
        return self

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with every event from now on, in the thread
        that raised it (a Redis command's, often: keep it quick). An
        exception it raises is logged, never passed to the command."""
        with self._lock:
            self._subscribers.append(subscriber)

    def emit(self, kind: EventKind, **details: Any) -> None:
        """Tell every subscriber, in the order they subscribed, of an event
        of ``kind`` with ``details`` (the other fields of
        :class:`ConnectionEvent`)."""
        event = ConnectionEvent(kind=kind, prefix=self.prefix, **details)
        for subscriber in tuple(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a broken subscriber must not break a Redis command
                logger.exception("connection event subscriber %r failed", subscriber)


def log_event(event: ConnectionEvent) -> None:
    """Write one event to the ``flask_core_redis`` logger at its level."""
    where = f"[{event.prefix}] {event.address}".rstrip()
    if event.kind == "connect":
        logger.info("%s: connected", where)
    elif event.kind == "disconnect" and event.error is not None:
        logger.warning("%s: disconnected: %s", where, describe_error(event.error))
    elif event.kind == "disconnect":
        logger.info("%s: connection closed", where)
    elif event.kind == "error":
        logger.error("%s: connection error: %s", where, describe_error(event.error))
    elif event.kind == "failover":
        logger.warning("%s: %s", where, event.detail)
    elif event.kind == "sentinel" and event.error is not None:
        logger.warning("%s: %s: %s", where, event.detail, describe_error(event.error))
    elif event.kind == "sentinel":
        logger.info("%s: %s", where, event.detail)
    elif event.kind == "retried":
        logger.debug("%s: %s after %s retries", where, event.outcome, event.attempt)
    else:
        logger.info("%s: retry %s in %.0f ms", where, event.attempt, event.delay_ms)
