"""Presence bound to python-socketio's AsyncServer (served by uvicorn), as it
is bound to Flask-SocketIO: connections make users online, the heartbeats
keep them online past the TTL, a disconnect makes them offline, changes go
to the room, and an unidentified connection is refused."""

import time
import uuid

import pytest
import socketio

from .servers import wait_until
from .test_async_client import AsgiServer

pytestmark = [pytest.mark.integration, pytest.mark.quart]  # uvicorn: the Quart test tools


async def identify(environ, auth):
    """The user the handshake names (a coroutine function, as allowed)."""
    assert environ["REQUEST_METHOD"] == "GET"  # the handshake's WSGI-style environ
    return (auth or {}).get("user")


def client_of(server, user, heard=None):
    client = socketio.Client(reconnection=False)
    if heard is not None:
        client.on("presence", lambda data: heard.append((data["user"], data["online"])))
    client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"],
                   auth={"user": user} if user else {}, wait_timeout=10)
    return client


def test_presence_follows_the_connections_of_an_async_server(make_app, redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}",
                         "REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}:"})
    sio = socketio.AsyncServer(async_mode="asgi")
    with app.app_context():
        ext.presence.bind_socketio(sio, identify, ttl=1, heartbeat_every=0.2)
        presence = ext.presence
    heard = []
    with AsgiServer(socketio.ASGIApp(sio)) as server:
        bob = client_of(server, "bob", heard)
        ann = client_of(server, "ann")
        try:
            wait_until(lambda: ("ann", True) in heard, 10, "bob to hear ann come online")
            until = time.monotonic() + 2.5  # 2.5 TTLs: the heartbeats keep her online
            while time.monotonic() < until:
                assert presence.online_many(["ann", "bob"]) == {"ann": True, "bob": True}
            assert heard.count(("ann", True)) == 1
            ann.disconnect()
            wait_until(lambda: ("ann", False) in heard, 10, "bob to hear ann go offline")
            assert not presence.is_online("ann")
            with pytest.raises(socketio.exceptions.ConnectionError):
                client_of(server, None)
        finally:
            ann.disconnect()
            bob.disconnect()
