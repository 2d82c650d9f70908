"""python-socketio's AsyncServer across processes through the app's Redis:
two servers, each with its own app, manager, event loop and connections
(served by uvicorn in threads of their own), on one server, Sentinel and
Cluster; a client of one hears what the other emits to a room."""

import uuid

import pytest
import socketio

from flask_core_redis.integrations.socketio_manager import async_socketio_manager

from .servers import wait_until
from .test_async_client import AsgiServer

pytestmark = [pytest.mark.integration, pytest.mark.quart]  # uvicorn: the Quart test tools

ROOM = "readers"


def socket_server(make_app, url, prefix):
    """An AsyncServer on an app of its own: its clients join ``ROOM``, and
    what one of them shouts it emits to the room, through the manager."""
    app, ext = make_app({"REDIS_URL": url, "REDIS_KEY_PREFIX": prefix})
    with app.app_context():
        sio = socketio.AsyncServer(async_mode="asgi", client_manager=async_socketio_manager(ext))

    @sio.event
    async def connect(sid, environ, auth=None):
        await sio.enter_room(sid, ROOM)

    @sio.event
    async def shout(sid, text):
        await sio.emit("news", text, to=ROOM)

    return socketio.ASGIApp(sio)


def connected(server, heard):
    client = socketio.Client(reconnection=False)
    client.on("news", heard.append)
    # A websocket: a polling client's disconnect waits out the ping interval.
    client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=10)
    return client


@pytest.mark.parametrize("mode", ["standalone", "sentinel", "cluster"])
def test_a_room_hears_what_another_async_server_emits(request, make_app, mode):
    if mode == "standalone":
        url = f"redis://{request.getfixturevalue('redis_server').address}"
    else:
        url = request.getfixturevalue(mode).url
    prefix = f"t{uuid.uuid4().hex[:8]}:"  # the servers' channel, shop:flask-socketio
    heard_on_a, heard_on_b = [], []
    with AsgiServer(socket_server(make_app, url, prefix)) as server_a, \
            AsgiServer(socket_server(make_app, url, prefix)) as server_b:
        sender, reader = connected(server_a, heard_on_a), connected(server_b, heard_on_b)
        try:
            def arrived():  # the listeners subscribe once their server is first used
                sender.emit("shout", f"hello from A ({mode})")
                return heard_on_b

            wait_until(arrived, 20, "B's client to hear what A emits", interval=0.3)
            assert heard_on_b[0] == f"hello from A ({mode})"
            assert f"hello from A ({mode})" in heard_on_a  # A's own room, once each
            assert len(set(heard_on_b)) == 1
        finally:
            sender.disconnect()
            reader.disconnect()
