"""Who is online, live, over Socket.IO (python-socketio's ``AsyncServer``).

Each Socket.IO connection of a logged-in user is a presence connection,
opened with ``aconnect`` and closed with ``adisconnect``; while the app
serves, a task heartbeats this process's connections every third of the
presence TTL and sweeps the users whose connections expired (a server that
died). Every change is sent to the ``presence`` room as a ``presence`` event,
``{"user": <masked phone>, "online": bool}``.

The handlers run on Quart's serving loop, outside any app context: each
enters the app's, so ``redis_ext`` finds the app, and its async client is the
one homed on that loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from http.cookies import SimpleCookie
from typing import Any

import socketio
from itsdangerous import BadData
from quart import Quart
from redis.exceptions import RedisError

from flask_core_redis.plugins.presence import TooManyConnections

from .extensions import redis_ext
from .phones import masked

logger = logging.getLogger("example_quart")

ROOM = "presence"


def session_user(app: Quart, environ: dict[str, Any]) -> str | None:
    """The user logged in by the session cookie of a Socket.IO handshake."""
    cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    cookie = cookies.get(app.config["SESSION_COOKIE_NAME"])
    if cookie is None:
        return None
    serializer = app.session_interface.get_signing_serializer(app)
    if serializer is None:  # no SECRET_KEY: no session either
        return None
    max_age = int(app.permanent_session_lifetime.total_seconds())
    try:
        data = serializer.loads(cookie.value, max_age=max_age)
    except BadData:  # forged, expired or malformed
        return None
    user = data.get("user")
    return user if isinstance(user, str) else None


class LivePresence:
    """The Socket.IO server's presence handlers for one app."""

    def __init__(self, app: Quart, sio: socketio.AsyncServer) -> None:
        self.app = app
        self.sio = sio
        self.connections: dict[str, str] = {}  # sid -> user, on this server
        sio.on("connect", self.connect)
        sio.on("disconnect", self.disconnect)
        app.while_serving(self.heartbeats)

    async def announce(self, user: str, online: bool) -> None:
        await self.sio.emit("presence", {"user": masked(user), "online": online}, to=ROOM)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        """Refuse a visitor who is not logged in, or a user at the connection limit."""
        user = session_user(self.app, environ)
        if user is None:
            return False
        try:
            async with self.app.app_context():
                came_online = await redis_ext.presence.aconnect(user, sid)
        except TooManyConnections:
            return False
        self.connections[sid] = user
        await self.sio.enter_room(sid, ROOM)
        if came_online:
            await self.announce(user, True)
        return True

    async def disconnect(self, sid: str, reason: Any = None) -> None:
        user = self.connections.pop(sid, None)
        if user is None:
            return
        async with self.app.app_context():
            went_offline = await redis_ext.presence.adisconnect(user, sid)
        if went_offline:
            await self.announce(user, False)

    async def heartbeats(self) -> AsyncGenerator[None, None]:
        """While the app serves: heartbeat every third of the presence TTL."""
        every = redis_ext.presence.default_ttl / 3
        task = asyncio.create_task(self._beat_forever(every))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _beat_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                async with self.app.app_context():
                    await self._beat()
            except RedisError as error:  # Redis down: try again next beat
                logger.warning("presence heartbeat failed: %s", type(error).__name__)

    async def _beat(self) -> None:
        alive = [(user, sid) for sid, user in list(self.connections.items())]
        renewed = await redis_ext.presence.aheartbeat_many(alive)
        for (user, sid), was_open in zip(alive, renewed, strict=True):
            # Closed meanwhile (a pause longer than the TTL): open it again.
            if not was_open and self.connections.get(sid) == user:
                with contextlib.suppress(TooManyConnections):
                    if await redis_ext.presence.aconnect(user, sid):
                        await self.announce(user, True)
        for user in await redis_ext.presence.asweep():
            await self.announce(user, False)
