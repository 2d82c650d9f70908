"""Presence over Socket.IO: each connection of a Flask-SocketIO server is a
presence connection, heartbeaten by the server process that holds it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

from ...plugin_api import describe_error
from .errors import TooManyConnections

logger = logging.getLogger("flask_core_redis")


class Presence(Protocol):
    """What the binding needs of the presence store."""

    def connect(self, user_id: object, connection_id: str,
                ttl: float | None = None) -> bool: ...

    def heartbeat(self, user_id: object, connection_id: str = ...,
                  ttl: float | None = None) -> bool: ...

    def disconnect(self, user_id: object, connection_id: str) -> bool: ...

    def sweep(self) -> list[str]: ...

    def on_offline(self, listener: Callable[[str], None]) -> None: ...


class _LocalConnections:
    """The Socket.IO connections this process serves: sid -> user. ``lock`` is
    held while a connection is removed, and while one is reopened after a
    missed heartbeat, so the two cannot interleave."""

    def __init__(self) -> None:
        self._users: dict[str, str] = {}
        self.lock = threading.Lock()

    def add(self, sid: str, user: str) -> None:
        with self.lock:
            self._users[sid] = user

    def pop(self, sid: str) -> str | None:
        with self.lock:
            return self._users.pop(sid, None)

    def holds(self, sid: str, user: str) -> bool:
        """Call with ``lock`` held."""
        return self._users.get(sid) == user

    def items(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self._users.items())


def bind_socketio(presence: Presence, socketio: Any, identify: Callable[[Any], object], *,
                  ttl: float, room: str = "presence", namespace: str = "/",
                  heartbeat_every: float | None = None) -> None:
    """Track Socket.IO connections as presence.

    On connect, ``identify(auth)`` (called in the Socket.IO request context,
    so ``flask.session`` works) names the user, or returns None to refuse the
    connection. The connection is opened for ``ttl`` seconds and joins
    ``room``; a user at ``PRESENCE_MAX_CONNECTIONS`` is refused. Every
    ``heartbeat_every`` seconds (default: a third of the TTL) this process
    heartbeats its connections, reopens one that a pause made time out, and
    sweeps: users whose last connection expired (their server died) are
    announced offline by whichever process sweeps first. On disconnect the
    connection is closed. Changes are broadcast to ``room`` as ``presence``
    events, ``{"user": ..., "online": bool}``. Registers the namespace's
    ``connect`` and ``disconnect`` handlers."""
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
        try:
            came_online = presence.connect(user_id, sid, ttl)  # validates the id
        except TooManyConnections as error:
            logger.warning("presence: connection refused: %s", error)
            return False
        user = str(user_id)
        local.add(sid, user)
        join_room(room)
        if came_online:
            announce(user, True)
        return True

    def on_disconnect(*_: Any) -> None:
        user = local.pop(request.sid)  # type: ignore[attr-defined]
        if user is not None and presence.disconnect(user, request.sid):  # type: ignore[attr-defined]
            announce(user, False)

    def reopen(sid: str, user: str) -> None:
        """A connection whose heartbeat found it closed: open it again, unless
        its disconnect came first (the lock orders the two)."""
        try:
            with local.lock:
                came_online = local.holds(sid, user) and presence.connect(user, sid, ttl)
        except TooManyConnections as error:
            logger.warning("presence: connection not reopened: %s", error)
            return
        if came_online:
            announce(user, True)

    def beat() -> None:
        for sid, user in local.items():
            if not presence.heartbeat(user, sid, ttl):
                reopen(sid, user)
        presence.sweep()

    def heartbeat_forever() -> None:
        while True:
            socketio.sleep(every)
            try:
                beat()
            except RedisError as error:  # Redis down: try again next beat
                logger.warning("presence heartbeat failed: %s", describe_error(error))
            except Exception:  # a bug must not stop the heartbeats for good
                logger.exception("presence heartbeat failed")

    presence.on_offline(lambda user: announce(user, False))
    socketio.on_event("connect", on_connect, namespace=namespace)
    socketio.on_event("disconnect", on_disconnect, namespace=namespace)
    socketio.start_background_task(heartbeat_forever)
