"""Presence bound to Socket.IO connections (Flask-SocketIO's test client)."""

import time

import pytest
from flask_socketio import SocketIO


@pytest.fixture
def bound(mode_app):
    app, ext = mode_app()
    socketio = SocketIO(app, async_mode="threading")
    with app.app_context():
        ext.presence.bind_socketio(
            socketio, identify=lambda auth: (auth or {}).get("user"), ttl=1,
            heartbeat_every=0.2)
    return app, ext, socketio


def events(client):
    return [(e["args"][0]["user"], e["args"][0]["online"])
            for e in client.get_received() if e["name"] == "presence"]


def test_connections_mark_users_online_and_changes_are_broadcast(bound):
    app, ext, socketio = bound
    ann = socketio.test_client(app, auth={"user": "ann"})
    bob = socketio.test_client(app, auth={"user": "bob"})
    with app.app_context():
        assert ext.presence.online_many(["ann", "bob"]) == {"ann": True, "bob": True}
    assert ("bob", True) in events(ann)
    bob_again = socketio.test_client(app, auth={"user": "bob"})  # a second tab
    bob.disconnect()
    with app.app_context():
        assert ext.presence.is_online("bob")  # the other tab is still open
    bob_again.disconnect()
    with app.app_context():
        assert not ext.presence.is_online("bob")
    assert ("bob", False) in events(ann)
    ann.disconnect()


def test_unidentified_connections_are_refused(bound):
    app, _, socketio = bound
    stranger = socketio.test_client(app, auth={})
    assert not stranger.is_connected()


def test_heartbeats_keep_a_connection_online_past_its_ttl(bound):
    app, ext, socketio = bound
    ann = socketio.test_client(app, auth={"user": "ann"})
    time.sleep(2.5)  # 2.5 TTLs; a heartbeat every 0.2 s keeps ann online
    with app.app_context():
        assert ext.presence.is_online("ann")
    ann.disconnect()
