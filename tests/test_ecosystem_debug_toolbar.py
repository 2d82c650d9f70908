"""Flask-DebugToolbar's Redis panel: a page's toolbar lists the Redis calls
its request made (commands, pipelines, scripts by name, keys shortened and
escaped, errors by type), never a value, and only that request's."""

import html
import importlib
import re
import sys
import threading
import uuid
from typing import NamedTuple
from unittest.mock import ANY

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import RedisError

from flask_core_redis import ConfigurationError

from .servers import require_package, wait_until

flask_debugtoolbar = require_package("flask_debugtoolbar")

from flask_core_redis.integrations import _command_log  # noqa: E402
from flask_core_redis.integrations.debug_toolbar import MAX_KEY_CHARS, _shown_key  # noqa: E402

pytestmark = [pytest.mark.ecosystem, pytest.mark.usefixtures("refuse_default_port")]

PANEL = "flask_core_redis.integrations.debug_toolbar.RedisPanel"
PAGE = "<html><body><p>done</p></body></html>"


def toolbar_app(app_factory, config=None):
    """An app with the toolbar showing the Redis panel alone."""
    app, ext = app_factory({
        "DEBUG": True, "DEBUG_TB_ENABLED": True, "DEBUG_TB_INTERCEPT_REDIRECTS": False,
        "DEBUG_TB_PANELS": [PANEL], "REDIS_DISABLED_PLUGINS": ["presence", "otp"],
        **(config or {})})
    flask_debugtoolbar.DebugToolbarExtension(app)
    return app, ext


def standalone(make_app, redis_server):
    """A toolbar app on the session's redis-server."""
    return toolbar_app(lambda config: make_app({"REDIS_URL": f"redis://{redis_server.address}",
                                                **config}))


class Row(NamedTuple):
    """One row of the panel, unescaped."""

    command: str
    keys: list[str]
    other_arguments: str
    milliseconds: str
    errors: str


ROW = re.compile(r'<tr class="flDebug\w+">\s*<td>\d+</td>' + r"\s*<td>(.*?)</td>" * 5,
                 re.DOTALL)


class Panel:
    """The Redis panel of a page's toolbar, read from the page's HTML."""

    def __init__(self, response) -> None:
        assert response.status_code == 200
        #: The whole page, toolbar included, as sent.
        self.page = response.get_data(as_text=True)
        start = self.page.index('id="flDebugRedisPanel-content"')
        content = self.page[start:self.page.index('id="flDebugWindow"', start)]
        self.rows = [Row(html.unescape(command), [html.unescape(key) for key in
                                                  re.findall(r"<code>(.*?)</code>", keys)],
                         other, milliseconds, html.unescape(errors))
                     for command, keys, other, milliseconds, errors in ROW.findall(content)]
        assert len(self.rows) == content.count("<tr class=")
        #: The nav subtitle.
        self.subtitle = re.search(r'id="flDebugRedisPanel">.*?<small>(.*?)</small>',
                                  self.page, re.DOTALL).group(1)

    def commands(self) -> list[str]:
        return [row.command for row in self.rows]

    def keys(self) -> list[str]:
        return [key for row in self.rows for key in row.keys]

    def row(self, command: str) -> Row:
        """The first row of ``command``."""
        found = [row for row in self.rows if row.command == command]
        assert found, f"no {command} in {self.commands()}"
        return found[0]


def test_a_page_lists_its_commands_pipelines_and_scripts_never_a_value(mode_app):
    app, ext = toolbar_app(mode_app)
    secret = f"s3cret-{uuid.uuid4().hex}"
    long_key = f"head-{uuid.uuid4().hex}-{'x' * 60}-tail"
    counter = f"visits:{uuid.uuid4().hex}"

    @app.get("/page")
    def page():
        ext.cache.set("profile", secret)
        assert ext.cache.get("profile") == secret
        ext.cache.get_or_set("computed", lambda: f"{secret}-computed")
        ext.client.get(long_key)
        with ext.client.pipeline(transaction=False) as pipe:
            pipe.incr(counter).expire(counter, 60)
            pipe.execute()
        return PAGE

    @app.get("/other")
    def other():
        ext.client.incr(counter)
        return PAGE

    web = app.test_client()
    panel = Panel(web.get("/page"))
    commands = panel.commands()
    assert {"MGET", "GET", "pipeline of 2: INCRBY, EXPIRE"} <= set(commands)
    assert "EVALSHA flask_core_redis.plugins.cache.scripts.SET_MANY" in commands
    assert "EVALSHA flask_core_redis.plugins.cache.scripts.CLAIM" in commands
    assert "EVALSHA flask_core_redis.plugins.cache.scripts.STORE_COMPUTED" in commands
    shown, = panel.row("GET").keys
    head = MAX_KEY_CHARS // 2
    assert long_key not in panel.page
    assert len(shown) == MAX_KEY_CHARS and shown[head] == "…"
    assert long_key.startswith(shown[:head]) and long_key.endswith(shown[head + 1:])
    assert secret not in panel.page
    count = int(re.fullmatch(r"(\d+) commands? in \d+\.\d\d ms", panel.subtitle).group(1))
    assert count == len(commands) + 1  # the pipeline's two commands on one row

    second = Panel(web.get("/other"))
    assert second.commands() == ["INCRBY"]
    assert second.keys() == [counter]
    assert re.fullmatch(r"1 command in \d+\.\d\d ms", second.subtitle)


def test_asyncio_clients_calls_are_listed(mode_app):
    """Called from the view as Flask calls an ``async def`` view (asgiref, in
    a loop of its own; the toolbar itself runs no async view), handed to the
    clients' home loop."""
    from asgiref.sync import async_to_sync

    app, ext = toolbar_app(mode_app)
    secret = f"s3cret-{uuid.uuid4().hex}"
    key, counter = f"a:{uuid.uuid4().hex}", f"n:{uuid.uuid4().hex}"

    async def work():
        await ext.cache.aset("profile", secret)
        await ext.async_client.get(key)
        async with ext.async_client.pipeline(transaction=False) as pipe:
            pipe.incr(counter).expire(counter, 60)
            await pipe.execute()

    @app.get("/page")
    def page():
        async_to_sync(work)()
        return PAGE

    panel = Panel(app.test_client().get("/page"))
    commands = panel.commands()
    assert "EVALSHA flask_core_redis.plugins.cache.scripts.SET_MANY" in commands
    assert panel.row("GET").keys == [key]
    assert commands.count("pipeline of 2: INCRBY, EXPIRE") == 1
    assert secret not in panel.page


def test_errors_show_their_type_and_arguments_that_are_not_keys_never_show(make_app,
                                                                          redis_server):
    app, ext = standalone(make_app, redis_server)
    secret = f"s3cret-{uuid.uuid4().hex}"
    tag = uuid.uuid4().hex[:8]
    hostile = f"<b>{tag}</b>\n&"

    @app.get("/page")
    def page():
        ext.client.set(hostile, "not a number")
        with pytest.raises(RedisError):
            ext.client.incr(hostile)
        with pytest.raises(RedisError):
            ext.client.execute_command(f"AUTH someone {secret}")  # redis-py splits it
        ext.client.client_setname(f"name-{secret}")
        ext.client.config_get(f"*{secret}*")
        ext.client.execute_command(f"hello 2 setname name-{secret}")
        return PAGE

    panel = Panel(app.test_client().get("/page"))
    assert panel.row("SET") == Row("SET", [f"<b>{tag}</b>\\n&"], "1", ANY, "")
    assert f"<b>{tag}" not in panel.page and "not a number" not in panel.page
    assert panel.row("INCRBY") == Row("INCRBY", [f"<b>{tag}</b>\\n&"], "1", ANY,
                                      "ResponseError")
    assert "not an integer" not in panel.page
    assert panel.row("AUTH") == Row("AUTH", [], "2", ANY, "AuthenticationError")
    assert panel.row("CLIENT SETNAME") == Row("CLIENT SETNAME", [], "1", ANY, "")
    assert panel.row("CONFIG GET") == Row("CONFIG GET", [], "1", ANY, "")
    assert panel.row("HELLO") == Row("HELLO", [], "3", ANY, "")
    assert secret not in panel.page


def test_another_threads_commands_are_not_listed(make_app, redis_server):
    app, ext = standalone(make_app, redis_server)
    own, elsewhere = f"own:{uuid.uuid4().hex}", f"elsewhere:{uuid.uuid4().hex}"

    @app.get("/page")
    def page():
        client = ext.client
        thread = threading.Thread(target=client.get, args=(elsewhere,))
        thread.start()
        thread.join()
        client.get(own)
        return PAGE

    assert Panel(app.test_client().get("/page")).keys() == [own]


def test_a_response_without_the_toolbar_stops_recording(make_app, redis_server):
    """A JSON response shows no toolbar, so no panel hears it end: the
    request's teardown stops its recording."""
    app, ext = standalone(make_app, redis_server)

    @app.get("/data")
    def data():
        ext.client.ping()
        return {"ok": True}

    assert app.test_client().get("/data").json == {"ok": True}
    assert _command_log._CURRENT.get() is None


@pytest.mark.parametrize("use_asyncio", [False, True], ids=["blocking", "asyncio"])
@pytest.mark.parametrize("mode", ["standalone", "cluster"])
def test_a_command_retried_after_its_connection_dropped_is_one_row(request, mode, mode_app,
                                                                   use_asyncio):
    """The server drops the app's connection while BLPOP waits on it: the
    command is sent again (by redis-py on one server, by the extension's
    retry policy on Cluster) and shows as one call that succeeded."""
    from asgiref.sync import async_to_sync

    name = f"toolbar-{uuid.uuid4().hex[:8]}"
    app, ext = toolbar_app(mode_app, {"REDIS_CLIENT_NAME": name})
    key = f"{{jobs}}:{uuid.uuid4().hex}"
    servers = ([request.getfixturevalue("redis_server")] if mode == "standalone"
               else request.getfixturevalue("cluster").nodes)

    def drop_then_push(client):
        wait_until(lambda: kill_blocked_connections(name, servers), 10, "BLPOP to block")
        client.rpush(key, "job")

    async def warm_up():
        await ext.async_client.ping()

    async def pop():
        return await ext.async_client.blpop([key], timeout=10)

    @app.get("/page")
    def page():
        client = ext.client
        helper = threading.Thread(target=drop_then_push, args=(client,))
        helper.start()
        popped = async_to_sync(pop)() if use_asyncio else client.blpop([key], timeout=10)
        helper.join()
        assert list(popped) == [key, "job"]
        return PAGE

    with app.app_context():  # a Cluster client reads the slot map as it is made
        ext.client.ping()
        async_to_sync(warm_up)()
    panel = Panel(app.test_client().get("/page"))
    assert panel.rows == [Row("BLPOP", [key], "1", ANY, "")]


def kill_blocked_connections(name, servers):
    """Close, from the servers' side, the connections named ``name`` that
    wait in BLPOP; how many there were."""
    killed = 0
    for server in servers:
        with server.client() as admin:
            for connection in admin.client_list():
                if connection["name"] == name and connection["cmd"] == "blpop":
                    killed += admin.client_kill_filter(_id=connection["id"])
    return killed


def test_scripts_are_named_by_their_constant_or_their_sha(make_app, redis_server):
    from flask_core_redis.plugin_api import LuaScript

    app, ext = standalone(make_app, redis_server)
    named = LuaScript(f"return '{uuid.uuid4().hex}'", name="greeting")
    unnamed = LuaScript(f"return '{uuid.uuid4().hex}'")

    @app.get("/page")
    def page():
        named(ext.client, [], [])
        unnamed(ext.client, [], [])
        return PAGE

    commands = Panel(app.test_client().get("/page")).commands()
    assert commands == ["EVALSHA greeting", "EVAL greeting",
                        f"EVALSHA script {unnamed.sha[:8]}", f"EVAL script {unnamed.sha[:8]}"]


@given(st.text(st.characters(exclude_categories=())))
def test_a_shown_key_prints_and_keeps_its_ends(key):
    """Any key, surrogates and control characters included, prints in at
    most MAX_KEY_CHARS characters; a printable one is itself if it fits,
    else its start, ``…`` and its end."""
    shown = _shown_key(key)
    assert len(shown) <= MAX_KEY_CHARS and shown.isprintable()
    shown.encode("utf-8")  # no lone surrogate
    if key.isprintable() and len(key) <= MAX_KEY_CHARS:
        assert shown == key
    elif key.isprintable():
        head = MAX_KEY_CHARS // 2
        assert len(shown) == MAX_KEY_CHARS and shown[head] == "…"
        assert key.startswith(shown[:head]) and key.endswith(shown[head + 1:])


def test_without_flask_debugtoolbar_the_panel_says_what_to_install(monkeypatch):
    name = "flask_core_redis.integrations.debug_toolbar"
    monkeypatch.delitem(sys.modules, name)  # put back after the test
    for module in [m for m in sys.modules if m.split(".")[0] == "flask_debugtoolbar"]:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigurationError, match=re.escape(
            f"{name} needs it: pip install flask-debugtoolbar")):
        importlib.import_module(name)
