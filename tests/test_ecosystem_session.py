"""Flask-Session on the app's Redis: sessions round-trip on every mode and
are stored in the app's server, never on localhost:6379."""

import warnings

import pytest
from flask import session

from flask_core_redis.integrations.sessions import session_interface

from .servers import require_package

require_package("flask_session")

pytestmark = [pytest.mark.ecosystem, pytest.mark.usefixtures("refuse_default_port")]


def session_app(mode_app, config=None):
    app, ext = mode_app({"SESSION_KEY_PREFIX": "session:", **(config or {})})
    app.session_interface = session_interface(ext, app)

    @app.post("/cart/<item>")
    def add(item):
        session.setdefault("cart", []).append(item)
        session.modified = True
        return {"cart": session["cart"]}

    @app.get("/cart")
    def show():
        return {"cart": session.get("cart", [])}

    return app, ext


def test_a_session_round_trips_over_requests_in_the_apps_server(mode_app, server_keys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Flask-Session's fallback only warns
        app, ext = session_app(mode_app)
        web = app.test_client()
        web.post("/cart/tea")
        web.post("/cart/€-note")
        assert web.get("/cart").get_json() == {"cart": ["tea", "€-note"]}
    sid = web.get_cookie("session").value
    with app.app_context():
        prefix = ext.settings.key_prefix
        stored = ext.get_client(decode_responses=False).get(f"{prefix}session:{sid}")
        assert stored is not None and b"tea" in stored
        assert ext.get_client(decode_responses=False).ttl(f"{prefix}session:{sid}") > 0
    assert server_keys(f"{prefix}session:*") == {f"{prefix}session:{sid}"}
    assert app.test_client().get("/cart").get_json() == {"cart": []}  # another browser


def test_two_app_servers_with_one_key_prefix_share_sessions(mode_app):
    first, _ = session_app(mode_app, {"REDIS_KEY_PREFIX": "shop:"})
    second, _ = session_app(mode_app, {"REDIS_KEY_PREFIX": "shop:"})
    writer = first.test_client()
    writer.post("/cart/milk")
    reader = second.test_client()
    reader.set_cookie("session", writer.get_cookie("session").value)
    assert reader.get("/cart").get_json() == {"cart": ["milk"]}


@pytest.mark.integration
def test_the_client_follows_close(request, make_app):
    server = request.getfixturevalue("redis_server")
    app, ext = make_app({"REDIS_URL": f"redis://{server.address}"})
    app.session_interface = session_interface(ext, app)
    with app.app_context():
        before = app.session_interface.client
        assert before is ext.get_client(decode_responses=False)
        ext.close()
        assert app.session_interface.client is ext.get_client(decode_responses=False)
        assert app.session_interface.client is not before


def test_an_app_without_the_extension_is_refused(make_app, memory_url):
    from flask import Flask

    _, ext = make_app({"REDIS_URL": memory_url})
    with pytest.raises(RuntimeError, match="is not registered on app"):
        session_interface(ext, Flask("other"))


@pytest.mark.integration
def test_flask_sessions_own_setup_would_fall_back_to_localhost_on_cluster(request, make_app):
    """Why session_interface exists: what the README says Flask-Session does
    with a Cluster client (checked without connecting anywhere)."""
    from flask_session.redis import RedisSessionInterface

    app, ext = make_app({"REDIS_URL": request.getfixturevalue("cluster").url})
    with app.app_context():
        cluster_client = ext.get_client(decode_responses=False)
    with pytest.warns(RuntimeWarning, match="localhost"):
        fallen = RedisSessionInterface(app, client=cluster_client)
    assert fallen.client is not cluster_client
    assert fallen.client.connection_pool.connection_kwargs["port"] == 6379


def test_flask_sessions_keys_apply(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "SESSION_KEY_PREFIX": "s:",
                         "SESSION_USE_SIGNER": True, "SESSION_ID_LENGTH": 8})
    with pytest.warns(DeprecationWarning, match="use_signer"):
        app.session_interface = session_interface(ext, app)

    @app.get("/")
    def hello():
        session["seen"] = True
        return ""

    web = app.test_client()
    web.get("/")
    sid, _, signature = web.get_cookie("session").value.partition(".")
    assert signature and len(sid) == 11  # signed; 8 random bytes, not 32
    with app.app_context():
        assert ext.client.exists(f"s:{sid}")
