"""python-socketio client managers on the app's Redis:
``SocketIO(app, client_manager=socketio_manager(ext))`` for Flask-SocketIO
(or a ``socketio.Server``), and
``socketio.AsyncServer(client_manager=async_socketio_manager(ext))`` for an
asyncio server (beside Quart, or any ASGI app).

Needs python-socketio: ``pip install 'flask-core-redis[socketio]'``; without
it, importing this module raises a ConfigurationError that says so.

Each manager subclasses python-socketio's documented pub/sub extension points
(``_publish`` and ``_listen``) and works where a ``message_queue=`` URL does
not: behind Sentinel (the listener follows a failover) and on Cluster (sharded
pub/sub). Its channel starts with ``KEY_PREFIX``. Messages are JSON. The
listener has a connection of its own with no read timeout, and after an error
it resubscribes with the core's delays, min(n x 50 ms, 2000 ms), forever,
reporting each retry as the core does. Both write the same messages on the
same channel, so sync and asyncio servers of one app reach each other's
clients."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from redis.exceptions import RedisError

from ..connection.async_pubsub import apublish, asubscribe
from ..connection.events import ConnectionEvents
from ..connection.pubsub import publish, subscribe
from ..connection.retry import LinearBackoff
from ..state import Registration, current_state
from ._missing import missing_library

try:
    from socketio import PubSubManager
    from socketio.async_pubsub_manager import AsyncPubSubManager  # type: ignore[import-untyped]
except ImportError as error:
    raise missing_library(__name__, "python-socketio",
                          "'flask-core-redis[socketio]'") from error

__all__ = ["AsyncCoreRedisManager", "CoreRedisManager", "async_socketio_manager",
           "socketio_manager"]

logger = logging.getLogger("flask_core_redis")

#: How long the listener waits for a message at a time.
POLL_SECONDS = 1.0
#: The manager's channel, after ``KEY_PREFIX``, unless told another.
DEFAULT_CHANNEL = "flask-socketio"


def socketio_manager(ext: Registration, channel: str = DEFAULT_CHANNEL,
                     write_only: bool = False) -> CoreRedisManager:
    """A Socket.IO client manager on the current app's Redis, for ``ext`` (a
    :class:`~flask_core_redis.CoreRedis`):
    ``SocketIO(app, client_manager=socketio_manager(ext))``. Its channel is
    ``channel`` after ``KEY_PREFIX`` (``shop:flask-socketio`` with ``shop:``),
    as for :meth:`~flask_core_redis.CoreRedis.publish`. With
    ``write_only=True`` it only emits, never listens: another process (an RQ
    job, say) can emit to the app's clients."""
    state = current_state(ext.config_prefix)
    return CoreRedisManager(lambda: state.client, state.duplicate, state.events,
                            channel=state.settings.key_prefix + channel,
                            write_only=write_only)


class OverTheAppsRedis:
    """What both managers are made of: ``publisher`` returns the client to
    publish with, ``listener`` makes a client for the listener's
    subscription, and ``events`` hears of the listener's errors and retries."""

    #: The manager's name in python-socketio's logs.
    name = "flask-core-redis"

    def __init__(self, publisher: Callable[[], Any], listener: Callable[..., Any],
                 events: ConnectionEvents, *, channel: str,
                 write_only: bool = False) -> None:
        super().__init__(channel=channel, write_only=write_only,  # type: ignore[call-arg]
                         logger=logger)
        self._publisher = publisher
        self._listener = listener
        self._events = events


class CoreRedisManager(OverTheAppsRedis, PubSubManager):  # type: ignore[misc]
    """Socket.IO messages between servers, over the app's Redis, on
    ``channel`` (the whole name). Made by :func:`socketio_manager`; its
    ``listener`` returns a new client."""

    _backoff = LinearBackoff()

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


def async_socketio_manager(ext: Registration, channel: str = DEFAULT_CHANNEL,
                           write_only: bool = False) -> AsyncCoreRedisManager:
    """:func:`socketio_manager` for python-socketio's ``AsyncServer``:
    ``socketio.AsyncServer(client_manager=async_socketio_manager(ext))``.
    It publishes with the app's asyncio client, and listens on a client of
    its own opened on the server's event loop, following failovers as
    :meth:`~flask_core_redis.CoreRedis.asubscribe` does."""
    state = current_state(ext.config_prefix)
    return AsyncCoreRedisManager(state.async_client, state.async_duplicate, state.events,
                                 channel=state.settings.key_prefix + channel,
                                 write_only=write_only)


class AsyncCoreRedisManager(OverTheAppsRedis, AsyncPubSubManager):  # type: ignore[misc]
    """:class:`CoreRedisManager` for an ``AsyncServer``: ``publisher``
    returns the asyncio client to publish with (for the running loop),
    ``listener`` builds the listener's client on the loop it is given."""

    async def _publish(self, data: Any) -> int:
        return await apublish(self._publisher(), self.channel, json.dumps(data))

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        messages = asubscribe(self._listener, self.channel, events=self._events,
                              wait_for_redis=True, address=f"socketio:{self.channel}")
        async for message in messages:
            decoded = _decode(message["data"])
            if decoded is not None:
                yield decoded


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
