"""Presence bound to Socket.IO connections (Flask-SocketIO's test client)."""

import threading
import time

import pytest
from flask_socketio import SocketIO

from .servers import wait_until


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


def test_the_room_hears_what_announce_as_makes_of_a_private_id(mode_app):
    """User ids that must stay private (phone numbers) reach the room as
    ``announce_as`` makes them; presence itself keeps the id."""
    app, ext = mode_app()
    socketio = SocketIO(app, async_mode="threading")
    with app.app_context():
        ext.presence.bind_socketio(socketio, identify=lambda auth: auth["phone"],
                                   announce_as=lambda phone: f"caller …{phone[-2:]}")
    watcher = socketio.test_client(app, auth={"phone": "+15550001111"})
    caller = socketio.test_client(app, auth={"phone": "+15550002222"})
    with app.app_context():
        assert ext.presence.is_online("+15550002222")
    caller.disconnect()
    heard = events(watcher)
    assert ("caller …22", True) in heard and ("caller …22", False) in heard
    assert not any("555000" in user for user, _ in heard)
    watcher.disconnect()


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


def test_a_heartbeat_racing_a_disconnect_leaves_no_ghost(bound):
    """The heartbeat loop takes its list of connections, then ann disconnects,
    then the loop heartbeats her connection: it must stay closed."""
    app, ext, socketio = bound
    watcher = socketio.test_client(app, auth={"user": "watcher"})
    ann = socketio.test_client(app, auth={"user": "ann"})
    with app.app_context():
        plugin = ext.presence
    real_heartbeat_many = plugin.heartbeat_many
    raced = threading.Event()

    def heartbeat_after_the_disconnect(connections, ttl=None):
        connections = list(connections)
        if any(user == "ann" for user, _ in connections) and not raced.is_set():
            ann.disconnect()
            raced.set()
        return real_heartbeat_many(connections, ttl)

    plugin.heartbeat_many = heartbeat_after_the_disconnect
    assert raced.wait(5), "the heartbeat loop never ran"
    time.sleep(0.5)  # more beats and sweeps; the TTL is 1 s
    with app.app_context():
        assert not ext.presence.is_online("ann")
        assert ext.presence.online_users() == ["watcher"]
    assert [event for event in events(watcher) if event[0] == "ann"] == [
        ("ann", True), ("ann", False)]
    watcher.disconnect()


def test_a_user_over_the_connection_cap_is_refused(mode_app):
    app, ext = mode_app({"REDIS_PRESENCE_MAX_CONNECTIONS": 2})
    socketio = SocketIO(app, async_mode="threading")
    with app.app_context():
        ext.presence.bind_socketio(socketio, identify=lambda auth: auth["user"], ttl=5)
    tabs = [socketio.test_client(app, auth={"user": "ann"}) for _ in range(3)]
    assert [tab.is_connected() for tab in tabs] == [True, True, False]
    tabs[0].disconnect()
    assert socketio.test_client(app, auth={"user": "ann"}).is_connected()


def test_a_connection_gone_without_a_disconnect_event_is_closed(bound):
    """A client that leaves while its connect handler runs gets no disconnect
    event from Socket.IO: the heartbeat round notices and closes it."""
    app, ext, socketio = bound
    watcher = socketio.test_client(app, auth={"user": "watcher"})
    ann = socketio.test_client(app, auth={"user": "ann"})
    manager = socketio.server.manager
    sid = manager.sid_from_eio_sid(ann.eio_sid, "/")
    manager.disconnect(sid, "/")  # behind the disconnect handler's back
    heard = []

    def announced_offline():  # within a round or two of heartbeats (every 0.2 s)
        heard.extend(events(watcher))
        return ("ann", False) in heard

    wait_until(announced_offline, 5, "ann's connection to be closed")
    with app.app_context():
        assert not ext.presence.is_online("ann")
    watcher.disconnect()


def test_closing_the_extension_ends_the_heartbeats(bound):
    app, ext, socketio = bound
    ann = socketio.test_client(app, auth={"user": "ann"})
    with app.app_context():
        ext.close()
    time.sleep(1.5)  # the TTL is 1 s: without heartbeats ann's connection expires
    with app.app_context():
        assert not ext.presence.is_online("ann")
    ann.disconnect()


def test_a_round_of_heartbeats_during_a_connect_handler_leaves_the_connection_open(bound):
    """Socket.IO counts a connection as connected only once its connect
    handler has returned. A round of heartbeats that runs while the handler is
    still broadcasting must not take it for a client that left: the user would
    be announced offline, and stay offline, while connected."""
    app, ext, socketio = bound
    watcher = socketio.test_client(app, auth={"user": "watcher"})
    with app.app_context():
        plugin = ext.presence
    real_sweep, real_emit = plugin.sweep, socketio.emit
    rounds = []
    rounds_ran = threading.Condition()

    def counted_sweep():
        gone = real_sweep()
        with rounds_ran:
            rounds.append(time.monotonic())
            rounds_ran.notify_all()
        return gone

    def slow_emit(event, data, **kwargs):
        if data == {"user": "ann", "online": True}:  # inside ann's connect handler
            with rounds_ran:
                seen = len(rounds)
                assert rounds_ran.wait_for(lambda: len(rounds) >= seen + 2, 5)
        return real_emit(event, data, **kwargs)

    plugin.sweep, socketio.emit = counted_sweep, slow_emit
    ann = socketio.test_client(app, auth={"user": "ann"})
    assert ann.is_connected()
    with rounds_ran:  # two more rounds, now that the handler has returned
        seen = len(rounds)
        assert rounds_ran.wait_for(lambda: len(rounds) >= seen + 2, 5)
    with app.app_context():
        assert ext.presence.is_online("ann")
    assert [event for event in events(watcher) if event[0] == "ann"] == [("ann", True)]
    ann.disconnect()
    watcher.disconnect()


def heartbeat_threads():
    return [thread for thread in threading.enumerate()
            if getattr(getattr(thread, "_target", None), "__name__", "") == "heartbeat_forever"]


def test_closing_the_extension_stops_a_slow_heartbeat_within_a_second_or_so(mode_app):
    """A heartbeat every 30 s does not keep its thread asleep for 30 s after
    ext.close()."""
    app, ext = mode_app()
    before = heartbeat_threads()
    socketio = SocketIO(app, async_mode="threading")
    with app.app_context():
        ext.presence.bind_socketio(socketio, identify=lambda auth: "ann", heartbeat_every=30)
    started = wait_until(lambda: set(heartbeat_threads()) - set(before), 5,
                         "the heartbeat thread")
    with app.app_context():
        ext.close()
    wait_until(lambda: not any(thread.is_alive() for thread in started), 5,
               "the heartbeat thread to end")
