"""Presence over Socket.IO: each connection of a Flask-SocketIO server is a
presence connection, heartbeaten by the server process that holds it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

from ...plugin_api import describe_error

logger = logging.getLogger("flask_core_redis")


class Presence(Protocol):
    """What the binding needs of the presence store."""

    def connect(self, user_id: object, connection_id: str,
                ttl: float | None = None) -> bool: ...

    def heartbeat(self, user_id: object, connection_id: str = ...,
                  ttl: float | None = None) -> bool: ...

    def mark_offline(self, user_id: object, connection_id: str | None = None) -> bool: ...


class _LocalConnections:
    """The Socket.IO connections this process serves: sid -> user."""

    def __init__(self) -> None:
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, sid: str, user: str) -> None:
        with self._lock:
            self._users[sid] = user

    def pop(self, sid: str) -> str | None:
        with self._lock:
            return self._users.pop(sid, None)

    def items(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._users.items())


def bind_socketio(presence: Presence, socketio: Any, identify: Callable[[Any], object], *,
                  ttl: float, room: str = "presence", namespace: str = "/",
                  heartbeat_every: float | None = None) -> None:
    """Track Socket.IO connections as presence.

    On connect, ``identify(auth)`` (called in the Socket.IO request context,
    so ``flask.session`` works) names the user, or returns None to refuse the
    connection. The connection is marked online for ``ttl`` seconds and joins
    ``room``; this process heartbeats its connections every
    ``heartbeat_every`` seconds (default: a third of the TTL); on disconnect
    it is marked offline. Changes are broadcast to ``room`` as ``presence``
    events, ``{"user": ..., "online": bool}``. A killed process stops
    heartbeating, so its users go offline after the TTL: no ghosts. Registers
    the namespace's ``connect`` and ``disconnect`` handlers."""
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
        came_online = presence.connect(user_id, sid, ttl)  # validates the id; one round trip
        user = str(user_id)
        local.add(sid, user)
        join_room(room)
        if came_online:
            announce(user, True)
        return True

    def on_disconnect(*_: Any) -> None:
        sid = request.sid  # type: ignore[attr-defined]
        user = local.pop(sid)
        if user is not None and not presence.mark_offline(user, connection_id=sid):
            announce(user, False)

    def heartbeat_forever() -> None:
        while True:
            socketio.sleep(every)
            for sid, user in local.items():
                try:
                    presence.heartbeat(user, sid, ttl)
                except RedisError as error:  # Redis down: try again next beat
                    logger.warning("presence heartbeat failed: %s", describe_error(error))

    socketio.on_event("connect", on_connect, namespace=namespace)
    socketio.on_event("disconnect", on_disconnect, namespace=namespace)
    socketio.start_background_task(heartbeat_forever)
