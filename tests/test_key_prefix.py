"""``REDIS_KEY_PREFIX`` starts every key and channel the extension and its
built-in plugins write: an ACL user confined to ``~<prefix>*`` and
``&<prefix>*`` runs every plugin, pub/sub and the Socket.IO manager, on one
server and on a Cluster."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from flask_core_redis.integrations.socketio_manager import socketio_manager

from .servers import wait_until

pytestmark = pytest.mark.integration

PASSWORD = "confined-s3cret"


#: The rule docs/production.md gives for an app that shares a server: every
#: command on its own keys and channels, none of the dangerous ones (FLUSHDB,
#: ACL, CONFIG...) except INFO, which health() reads.
RULES = ("+@all", "-@dangerous", "+info")


def confine(client: redis.Redis, user: str, prefix: str) -> None:
    client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{PASSWORD}",
                           f"~{prefix}*", f"&{prefix}*", *RULES)


@pytest.fixture(params=["standalone", "cluster"])
def confined_app(request, make_app, tmp_path):
    """An app whose ACL user may touch only keys and channels under its
    prefix, ``shop-<unique>:`` (a prefix of its own on the shared Cluster)."""
    user = f"confined-{uuid.uuid4().hex[:8]}"
    prefix = f"shop-{user}:"
    if request.param == "standalone":
        server = request.getfixturevalue("own_redis_server")
        nodes, url = [server], f"redis://{server.address}"
    else:
        cluster = request.getfixturevalue("cluster")
        nodes, url = cluster.nodes, cluster.url
    for node in nodes:  # ACL users are per node, even in a Cluster
        with node.client() as admin:
            confine(admin, user, prefix)
    app, ext = make_app({"REDIS_URL": url, "REDIS_USERNAME": user, "REDIS_PASSWORD": PASSWORD,
                         "REDIS_KEY_PREFIX": prefix,
                         "REDIS_OTP_RESEND_COOLDOWN": 0, "REDIS_PRESENCE_SHARDS": 4})
    yield app, ext, nodes
    for node in nodes:
        with node.client() as admin:
            admin.execute_command("ACL", "DELUSER", user)


def keys_naming(nodes, text: str) -> list[str]:
    """Every key, on every node, with ``text`` anywhere in its name."""
    keys: list[str] = []
    for node in nodes:
        with node.client() as admin:
            keys += admin.scan_iter(match=f"*{text}*")
    return keys


def test_every_plugin_runs_as_a_user_confined_to_the_prefix(confined_app):
    app, ext, nodes = confined_app
    marker = uuid.uuid4().hex[:8]
    with app.app_context():
        prefix = ext.settings.key_prefix
        assert ext.cache.get_or_set(f"user:{marker}", lambda: {"name": "Ann"},
                                    namespace=f"profiles-{marker}") == {"name": "Ann"}
        assert ext.cache.get(f"user:{marker}", namespace=f"profiles-{marker}") == {
            "name": "Ann"}
        ext.cache.invalidate_namespace(f"profiles-{marker}")
        assert ext.cache.get(f"user:{marker}", namespace=f"profiles-{marker}") is None

        phone = f"+1555{int(marker, 16) % 10**7:07d}"
        code = ext.otp.issue(phone)
        assert ext.otp.check(phone, code).ok

        ext.presence.mark_online(f"ann-{marker}", 60, connection_id="tab")
        assert ext.presence.is_online(f"ann-{marker}")
        ext.presence.sweep()
        ext.presence.mark_offline(f"ann-{marker}", connection_id="tab")
        assert not ext.presence.is_online(f"ann-{marker}")
        assert ext.health()["ok"], ext.health()
        with pytest.raises(redis.exceptions.NoPermissionError):
            ext.client.execute_command("FLUSHDB")  # no app wipes the others' keys

    keys = keys_naming(nodes, marker) + keys_naming(nodes, prefix)
    assert {key.split("}")[0] for key in keys} >= {f"{prefix}{{cache:profiles-{marker}",
                                                   f"{prefix}{{otp:{phone}"}, keys
    assert any(key.startswith(f"{prefix}{{presence:") for key in keys), keys
    assert all(key.startswith(f"{prefix}{{") for key in keys), keys


def test_pub_sub_runs_as_a_user_confined_to_the_prefix(confined_app):
    app, ext, _ = confined_app
    with app.app_context():
        subscription = ext.subscribe("news")
        wait_until(lambda: ext.publish("news", "hello") >= 1, 10, "the subscription")
        message = wait_until(lambda: subscription.get_message(ignore_subscribe_messages=True,
                                                              timeout=0.1), 10, "the message")
        assert (message["channel"], message["data"]) == (
            f"{ext.settings.key_prefix}news", "hello")
        subscription.close()


def test_the_socketio_manager_runs_as_a_user_confined_to_the_prefix(confined_app):
    app, ext, _ = confined_app
    errors = []
    with app.app_context():
        ext.events.subscribe(lambda event: errors.append(event) if event.kind == "error"
                             else None)
        listener = socketio_manager(ext)
        writer = socketio_manager(ext, write_only=True)
        assert listener.channel == f"{ext.settings.key_prefix}flask-socketio"
        received = []
        messages = listener._listen()  # python-socketio's extension point for managers
        reader = threading.Thread(target=lambda: received.append(next(messages)), daemon=True)
        reader.start()
        wait_until(lambda: writer._publish({"method": "emit", "event": "hi"}) >= 1 or errors,
                   10, "the listener's subscription")
        reader.join(10)
        assert not errors, errors
        assert received == [{"method": "emit", "event": "hi"}]
