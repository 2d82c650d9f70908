"""A python-socketio client manager on this extension's Redis settings, for
``SocketIO(app, client_manager=ext.socketio_manager())``.

It subclasses python-socketio's documented pub/sub extension points
(``_publish`` and ``_listen``) and works where a ``message_queue=`` URL does
not: behind Sentinel (the listener follows a failover) and on Cluster (sharded
pub/sub). Messages are JSON. The listener has a connection of its own with no
read timeout, and after an error it resubscribes with the core's delays,
min(n x 50 ms, 2000 ms), forever, reporting each retry as the core does."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from redis.exceptions import RedisError
from socketio import PubSubManager

from ..connection.events import ConnectionEvents
from ..connection.retry import LinearBackoff
from .pubsub import publish, subscribe

logger = logging.getLogger("flask_core_redis")

POLL_SECONDS = 1.0


class CoreRedisManager(PubSubManager):  # type: ignore[misc]
    """Socket.IO messages between servers, over the app's Redis."""

    name = "flask-core-redis"

    def __init__(self, publisher: Callable[[], Any], listener: Callable[[], Any],
                 events: ConnectionEvents, channel: str = "flask-socketio",
                 write_only: bool = False) -> None:
        super().__init__(channel=channel, write_only=write_only, logger=logger)
        self._publisher = publisher
        self._listener = listener
        self._events = events
        self._backoff = LinearBackoff()

    def _publish(self, data: Any) -> int:
        return publish(self._publisher(), self.channel, json.dumps(data))

    def _listen(self) -> Iterator[dict[str, Any]]:
        failures = 0
        while True:
            try:
                subscription = subscribe(self._listener(), self.channel)
                failures = 0
                yield from self._messages(subscription)
            except RedisError as error:
                failures += 1
                delay = self._backoff.compute(failures)
                self._events.emit("error", address=f"socketio:{self.channel}", error=error)
                self._events.emit("retry", address=f"socketio:{self.channel}",
                                  attempt=failures, delay_ms=delay * 1000)
                time.sleep(delay)

    def _messages(self, subscription: Any) -> Iterator[dict[str, Any]]:
        try:
            while True:
                message = subscription.get_message(ignore_subscribe_messages=True,
                                                   timeout=POLL_SECONDS)
                if message and message["type"] in ("message", "smessage"):
                    decoded = _decode(message["data"])
                    if decoded is not None:
                        yield decoded
        finally:
            subscription.close()


def _decode(data: Any) -> dict[str, Any] | None:
    """A JSON object, or None (logged) for anything else on the channel."""
    try:
        decoded = json.loads(data)
    except (TypeError, ValueError):
        decoded = None
    if not isinstance(decoded, dict):
        logger.warning("socketio: ignored a message that is not a JSON object")
        return None
    return decoded
