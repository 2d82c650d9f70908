"""ext.get_client(decode_responses=...): a second shared client that returns
bytes (or str), on memory, standalone, Sentinel and Cluster."""

import pickle
from typing import ClassVar

from flask_core_redis.plugin_api import hookimpl, manager


def test_a_bytes_client_returns_the_stored_bytes(mode_app):
    app, ext = mode_app()
    value = pickle.dumps({"not": "utf-8", "raw": b"\x80\xff\x00"})
    with app.app_context():
        raw = ext.get_client(decode_responses=False)
        raw.set("session:1", value)
        assert raw.get("session:1") == value
        assert ext.client.set("text", "héllo") and raw.get("text") == "héllo".encode()
        assert ext.client.get("text") == "héllo"


def test_each_kind_is_built_once_per_app_and_the_default_is_unchanged(mode_app):
    app, ext = mode_app()
    with app.app_context():
        raw = ext.get_client(decode_responses=False)
        assert ext.get_client(decode_responses=False) is raw
        assert raw is not ext.client
        assert ext.get_client() is ext.client
        assert ext.get_client(decode_responses=True) is ext.client  # DECODE_RESPONSES=true
    other_app, other_ext = mode_app()
    with other_app.app_context():
        assert other_ext.get_client(decode_responses=False) is not raw


def test_with_decode_responses_off_a_text_client_is_the_second_one(mode_app):
    app, ext = mode_app({"REDIS_DECODE_RESPONSES": "false"})
    with app.app_context():
        ext.client.set("k", "v")
        assert ext.client.get("k") == b"v"
        assert ext.get_client(decode_responses=False) is ext.client
        assert ext.get_client(decode_responses=True).get("k") == "v"


def test_close_closes_it_and_the_next_use_builds_another(mode_app):
    app, ext = mode_app()
    with app.app_context():
        raw = ext.get_client(decode_responses=False)
        raw.ping()
        ext.close()
        again = ext.get_client(decode_responses=False)
        assert again is not raw
        assert again.ping()


class Announced:
    """Records every client the extension announces."""

    clients: ClassVar[list] = []

    @hookimpl
    def core_redis_client_created(self, client):
        Announced.clients.append(client)


def test_plugins_hear_of_it(mode_app, monkeypatch):
    from importlib.metadata import EntryPoint

    installed = manager.plugin_entry_points()
    extra = EntryPoint("announced", "tests.test_bytes_client:Announced",
                       manager.ENTRY_POINT_GROUP)
    monkeypatch.setattr(manager, "plugin_entry_points", lambda: [*installed, extra])
    Announced.clients.clear()
    app, ext = mode_app()
    with app.app_context():
        raw = ext.get_client(decode_responses=False)
    assert any(client is raw for client in Announced.clients)
