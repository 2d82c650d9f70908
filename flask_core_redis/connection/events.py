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
#: master moved, or a failover of it started or ended without a promotion.
EventKind = Literal["connect", "disconnect", "error", "retry", "sentinel", "failover"]

logger = logging.getLogger("flask_core_redis")


@dataclass(frozen=True)
class ConnectionEvent:
    """Something happened to a connection of one registration (``prefix``)."""

    kind: EventKind
    prefix: str
    address: str = ""
    error: BaseException | None = None
    attempt: int | None = None
    delay_ms: float | None = None
    detail: str | None = None


Subscriber = Callable[[ConnectionEvent], None]


class ConnectionEvents:
    """Fans events out to subscribers. Shared, never copied: redis-py deep-copies
    its retry objects, and every copy must still report here."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> ConnectionEvents:
        return self

    def __copy__(self) -> ConnectionEvents:
        return self

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def emit(self, kind: EventKind, **details: Any) -> None:
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
    else:
        logger.info("%s: retry %s in %.0f ms", where, event.attempt, event.delay_ms)
