"""Presence over Socket.IO: each connection of a Flask-SocketIO server, or of
python-socketio's ``AsyncServer``, is a presence connection, heartbeaten by
the server process that holds it."""

from __future__ import annotations

import asyncio
import inspect
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

    async def aconnect(self, user_id: object, connection_id: str,
                       ttl: float | None = None) -> bool: ...

    async def aheartbeat_many(self, connections: Iterable[tuple[object, str]],
                              ttl: float | None = None) -> list[bool]: ...

    async def adisconnect(self, user_id: object, connection_id: str) -> bool: ...

    async def asweep(self) -> list[str]: ...


class _LocalConnections:
    """The Socket.IO connections this process serves: sid -> user, and the
    round of heartbeats in which its connect handler returned (None while it
    runs).

    The Redis changes of one connection (open, reopen, close) run under the
    lock of its sid's stripe, in the order their handlers started: a
    disconnect that arrives while its connect is opening the connection waits,
    then closes it."""

    STRIPES = 64

    def __init__(self, stripe_lock: Callable[[], Any] = threading.Lock) -> None:
        self._users: dict[str, tuple[str, int | None]] = {}
        self._guard = threading.Lock()  # never held across an await
        self._stripes = [stripe_lock() for _ in range(self.STRIPES)]
        self.round = 0

    def lock(self, sid: str) -> Any:
        """The lock of ``sid``'s stripe (an ``asyncio.Lock`` for an AsyncServer)."""
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


def bind_socketio(presence: Presence, socketio: Any, identify: Callable[..., object], *,
                  ttl: float, room: str = "presence", namespace: str = "/",
                  heartbeat_every: float | None = None,
                  stop: threading.Event | None = None,
                  announce_as: Callable[[str], object] = str) -> None:
    """Track Socket.IO connections as presence (of python-socketio's
    ``AsyncServer`` too: see :class:`AsyncBinding`).

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
    events, ``{"user": announce_as(user), "online": bool}`` (``announce_as``:
    what the room may see of a user whose id is private, a phone number say).
    Registers the namespace's ``connect`` and ``disconnect`` handlers. The
    heartbeats stop once ``stop`` is set (``ext.close()`` sets it)."""
    if _is_async_server(socketio):
        AsyncBinding(presence, socketio, identify, ttl=ttl, room=room, namespace=namespace,
                     heartbeat_every=heartbeat_every, stop=stop,
                     announce_as=announce_as).bind()
        return
    from flask import request

    every = heartbeat_every or max(ttl / 3, 0.1)
    local = _LocalConnections()

    def announce(user: str, online: bool) -> None:
        socketio.emit("presence", {"user": announce_as(user), "online": online}, to=room,
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


def _is_async_server(socketio: Any) -> bool:
    try:
        from socketio import AsyncServer
    except ImportError:
        return False
    return isinstance(socketio, AsyncServer)


class AsyncBinding:
    """Presence bound to python-socketio's ``AsyncServer``, as
    :func:`bind_socketio` binds it to Flask-SocketIO, with the presence
    plugin's async forms, on the server's event loop.

    There is no Flask request around its handlers: ``identify(environ,
    auth)`` names the user from the handshake (the WSGI-style ``environ``
    python-socketio gives a connect handler: read a signed session cookie
    from ``environ["HTTP_COOKIE"]``), and may be a coroutine function. The
    heartbeats run as a task of the server, started by the first connection
    (the server's loop runs by then)."""

    def __init__(self, presence: Presence, sio: Any, identify: Callable[..., Any], *,
                 ttl: float, room: str, namespace: str, heartbeat_every: float | None,
                 stop: threading.Event | None,
                 announce_as: Callable[[str], object] = str) -> None:
        self.presence = presence
        self.announce_as = announce_as
        self.sio = sio
        self.identify = identify
        self.ttl = ttl
        self.room = room
        self.namespace = namespace
        self.every = heartbeat_every or max(ttl / 3, 0.1)
        self.stopped = stop or threading.Event()
        self.local = _LocalConnections(asyncio.Lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heartbeats: Any = None

    def bind(self) -> None:
        """Register the namespace's handlers and the offline listener."""
        self.presence.on_offline(self._announce_offline)
        self.sio.on("connect", self.on_connect, namespace=self.namespace)
        self.sio.on("disconnect", self.on_disconnect, namespace=self.namespace)

    async def announce(self, user: str, online: bool) -> None:
        await self.sio.emit("presence", {"user": self.announce_as(user), "online": online},
                            to=self.room, namespace=self.namespace)

    def _announce_offline(self, user: str) -> None:
        """An ``on_offline`` listener, called by whichever sweep finds the
        user gone, in any thread or loop: the event is sent from the server's."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _running_loop() is loop:
            loop.create_task(self.announce(user, False))
        else:
            asyncio.run_coroutine_threadsafe(self.announce(user, False), loop)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        self._start_heartbeats()
        user_id = self.identify(environ, auth)
        if inspect.isawaitable(user_id):
            user_id = await user_id
        if user_id is None or user_id is False:
            return False
        async with self.local.lock(sid):
            try:
                came_online = await self.presence.aconnect(user_id, sid, self.ttl)
            except TooManyConnections as error:
                logger.warning("presence: connection refused: %s", error)
                return False
            user = str(user_id)
            self.local.add(sid, user)
        try:
            await self.sio.enter_room(sid, self.room, namespace=self.namespace)
            if came_online:
                await self.announce(user, True)
        finally:
            self.local.opened(sid)
        return True

    async def on_disconnect(self, sid: str, *reason: Any) -> None:
        await self.close(sid)

    async def close(self, sid: str) -> None:
        async with self.local.lock(sid):
            user = self.local.pop(sid)
            went_offline = user is not None and await self.presence.adisconnect(user, sid)
        if went_offline and user is not None:
            await self.announce(user, False)

    async def reopen(self, sid: str, user: str) -> None:
        """A connection whose heartbeat found it closed: open it again, unless
        its disconnect came first."""
        try:
            async with self.local.lock(sid):
                came_online = self.local.holds(sid, user) and await self.presence.aconnect(
                    user, sid, self.ttl)
        except TooManyConnections as error:
            logger.warning("presence: connection not reopened: %s", error)
            return
        if came_online:
            await self.announce(user, True)

    async def beat(self) -> None:
        alive = []
        for sid, user, settled in self.local.next_round():
            if settled and not self.sio.manager.is_connected(sid, self.namespace):
                await self.close(sid)
            else:
                alive.append((user, sid))
        renewed = await self.presence.aheartbeat_many(alive, self.ttl)
        for (user, sid), was_open in zip(alive, renewed, strict=True):
            if not was_open:
                await self.reopen(sid, user)
        await self.presence.asweep()

    def _start_heartbeats(self) -> None:
        if self._heartbeats is None:
            self._loop = asyncio.get_running_loop()
            self._heartbeats = self.sio.start_background_task(self._heartbeat_forever)

    async def _pause(self) -> None:
        """``every`` seconds, in steps of at most one, so a stop ends the loop
        within a second."""
        deadline = time.monotonic() + self.every
        while not self.stopped.is_set() and (left := deadline - time.monotonic()) > 0:
            await self.sio.sleep(min(left, 1.0))

    async def _heartbeat_forever(self) -> None:
        while not self.stopped.is_set():
            await self._pause()
            if self.stopped.is_set():
                break
            try:
                await self.beat()
            except RedisError as error:  # Redis down: try again next beat
                logger.warning("presence heartbeat failed: %s", describe_error(error))
            except Exception:  # a bug must not stop the heartbeats for good
                logger.exception("presence heartbeat failed")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
