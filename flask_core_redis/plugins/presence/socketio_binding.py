"""Presence over Socket.IO: each connection of a Flask-SocketIO server is a
presence connection, heartbeaten by the server process that holds it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from redis.exceptions import RedisError

from ...plugin_api import describe_error
from .errors import TooManyConnections

logger = logging.getLogger("flask_core_redis")


class Presence(Protocol):
    """What the binding needs of the presence store."""

    def connect(self, user_id: object, connection_id: str,
                ttl: float | None = None) -> bool: ...

    def heartbeat_many(self, connections: Iterable[tuple[object, str]],
                       ttl: float | None = None) -> list[bool]: ...

    def disconnect(self, user_id: object, connection_id: str) -> bool: ...

    def sweep(self) -> list[str]: ...

    def on_offline(self, listener: Callable[[str], None]) -> None: ...


class _LocalConnections:
    """The Socket.IO connections this process serves: sid -> user, and the
    round of heartbeats in which its connect handler returned (None while it
    runs).

    The Redis changes of one connection (open, reopen, close) run under the
    lock of its sid's stripe, in the order their handlers started: a
    disconnect that arrives while its connect is opening the connection waits,
    then closes it."""

    STRIPES = 64

    def __init__(self) -> None:
        self._users: dict[str, tuple[str, int | None]] = {}
        self._guard = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(self.STRIPES)]
        self.round = 0

    def lock(self, sid: str) -> threading.Lock:
        return self._stripes[hash(sid) % self.STRIPES]

    def add(self, sid: str, user: str) -> None:
        """A connection whose connect handler is running."""
        with self._guard:
            self._users[sid] = (user, None)

    def opened(self, sid: str) -> None:
        """Its connect handler has returned (or raised)."""
        with self._guard:
            if sid in self._users:
                self._users[sid] = (self._users[sid][0], self.round)

    def pop(self, sid: str) -> str | None:
        with self._guard:
            user, _ = self._users.pop(sid, (None, None))
            return user

    def holds(self, sid: str, user: str) -> bool:
        with self._guard:
            return self._users.get(sid, (None, None))[0] == user

    def next_round(self) -> list[tuple[str, str, bool]]:
        """Start a round of heartbeats: every (sid, user, settled). Socket.IO
        counts a connection as connected only after its connect handler
        returns, so one is settled (Socket.IO must know it) once a whole round
        has passed since then; a round may start just as a handler returns."""
        with self._guard:
            self.round += 1
            return [(sid, user, opened is not None and opened < self.round - 1)
                    for sid, (user, opened) in self._users.items()]


def bind_socketio(presence: Presence, socketio: Any, identify: Callable[[Any], object], *,
                  ttl: float, room: str = "presence", namespace: str = "/",
                  heartbeat_every: float | None = None,
                  stop: threading.Event | None = None) -> None:
    """Track Socket.IO connections as presence.

    On connect, ``identify(auth)`` (called in the Socket.IO request context,
    so ``flask.session`` works) names the user, or returns None to refuse the
    connection. The connection is opened for ``ttl`` seconds and joins
    ``room``; a user at ``PRESENCE_MAX_CONNECTIONS`` is refused. On disconnect
    it is closed. Every ``heartbeat_every`` seconds (default: a third of the
    TTL) this process heartbeats its connections, reopens one that a pause made
    time out, closes one Socket.IO no longer knows (a client gone while its
    connect handler ran gets no disconnect), and sweeps: users whose last
    connection expired (their server died) are announced offline by whichever
    process sweeps first. Changes are broadcast to ``room`` as ``presence``
    events, ``{"user": ..., "online": bool}``. Registers the namespace's
    ``connect`` and ``disconnect`` handlers. The heartbeats stop once ``stop``
    is set (``ext.close()`` sets it)."""
    from flask import request

    every = heartbeat_every or max(ttl / 3, 0.1)
    local = _LocalConnections()

    def announce(user: str, online: bool) -> None:
        socketio.emit("presence", {"user": user, "online": online}, to=room,
                      namespace=namespace)

    def on_connect(auth: Any = None) -> bool:
        from flask_socketio import join_room

        user_id = identify(auth)
        if user_id is None or user_id is False:
            return False
        sid = request.sid  # type: ignore[attr-defined]
        with local.lock(sid):
            try:
                came_online = presence.connect(user_id, sid, ttl)  # validates the id
            except TooManyConnections as error:
                logger.warning("presence: connection refused: %s", error)
                return False
            user = str(user_id)
            local.add(sid, user)
        try:
            join_room(room)
            if came_online:
                announce(user, True)
        finally:
            local.opened(sid)
        return True

    def close(sid: str) -> None:
        with local.lock(sid):
            user = local.pop(sid)
            went_offline = user is not None and presence.disconnect(user, sid)
        if went_offline and user is not None:
            announce(user, False)

    def reopen(sid: str, user: str) -> None:
        """A connection whose heartbeat found it closed: open it again, unless
        its disconnect came first."""
        try:
            with local.lock(sid):
                came_online = local.holds(sid, user) and presence.connect(user, sid, ttl)
        except TooManyConnections as error:
            logger.warning("presence: connection not reopened: %s", error)
            return
        if came_online:
            announce(user, True)

    def beat() -> None:
        alive = []
        for sid, user, settled in local.next_round():
            if settled and not socketio.server.manager.is_connected(sid, namespace):
                close(sid)
            else:
                alive.append((user, sid))
        renewed = presence.heartbeat_many(alive, ttl)  # two round trips for all
        for (user, sid), was_open in zip(alive, renewed, strict=True):
            if not was_open:
                reopen(sid, user)
        presence.sweep()

    stopped = stop or threading.Event()

    def pause() -> None:
        """``every`` seconds, in steps of at most one, so a stop ends the loop
        within a second (``socketio.sleep`` suits every async mode, where an
        Event's wait would block eventlet's hub)."""
        deadline = time.monotonic() + every
        while not stopped.is_set() and (left := deadline - time.monotonic()) > 0:
            socketio.sleep(min(left, 1.0))

    def heartbeat_forever() -> None:
        while not stopped.is_set():
            pause()
            if stopped.is_set():
                break
            try:
                beat()
            except RedisError as error:  # Redis down: try again next beat
                logger.warning("presence heartbeat failed: %s", describe_error(error))
            except Exception:  # a bug must not stop the heartbeats for good
                logger.exception("presence heartbeat failed")

    presence.on_offline(lambda user: announce(user, False))
    socketio.on_event("connect", on_connect, namespace=namespace)
    socketio.on_event("disconnect", lambda *_: close(request.sid),  # type: ignore[attr-defined]
                      namespace=namespace)
    socketio.start_background_task(heartbeat_forever)
