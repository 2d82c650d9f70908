"""Who is online, live, over Socket.IO (python-socketio's ``AsyncServer``).

The presence plugin's binding does the work (``bind_socketio``): each
Socket.IO connection of a user whose signed session cookie names them is a
presence connection; it joins the ``presence`` room, the binding heartbeats it
while it lasts and closes it on disconnect, and sweeps the users of a server
that died. Every change goes to the room as a ``presence`` event,
``{"user": <masked phone>, "online": bool}``, on which the page reads the
list again. The user id is the phone number, which the room sees masked
(``announce_as``).

The server's client manager is on the app's Redis
(``async_socketio_manager``), so an event reaches the sockets of every worker.
Both need the app context, which Quart enters only in async code, and
``create_app`` may run inside the server's loop (``uvicorn --factory``): the
Socket.IO server is made when the app starts serving."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import socketio
from itsdangerous import BadData
from quart import Quart

from flask_core_redis.integrations.socketio_manager import async_socketio_manager

from .extensions import redis_ext
from .phones import masked

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


def serve_socket_io(app: Quart) -> None:
    """Each time ``app`` starts serving, in its app context: a Socket.IO
    server with its client manager and presence binding, put in front of the
    app (``app.asgi_app``); a visitor who is not logged in is refused."""
    quart_asgi = app.asgi_app

    @app.before_serving
    async def start_socket_io() -> None:
        sio = socketio.AsyncServer(async_mode="asgi",
                                   client_manager=async_socketio_manager(redis_ext))
        redis_ext.presence.bind_socketio(
            sio, lambda environ, auth: session_user(app, environ), room=ROOM,
            announce_as=masked)
        app.asgi_app = socketio.ASGIApp(sio, quart_asgi)  # type: ignore[method-assign]
