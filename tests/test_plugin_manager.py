"""The plugin system: discovery, enabling, hooks, CLI, isolation."""

from importlib.metadata import EntryPoint

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_core_redis import ConfigurationError, CoreRedis, PluginError
from flask_core_redis.plugin_api import MIN_REPLAY_MS, manager, replay_window_ms

from . import plugin_samples

SAMPLES = "tests.plugin_samples"


@pytest.fixture
def samples(monkeypatch):
    """Make the sample plugins available as entry points, beside the installed ones."""
    installed = manager.plugin_entry_points()
    extra = [EntryPoint(name, f"{SAMPLES}:{attribute}", manager.ENTRY_POINT_GROUP)
             for name, attribute in (("recorder", "RecordingPlugin"), ("boom", "BoomPlugin"),
                                     ("unhealthy", "UnhealthyPlugin"),
                                     ("broken", "BrokenHookPlugin"),
                                     ("wrapper", "WrapperPlugin"))]
    monkeypatch.setattr(manager, "plugin_entry_points", lambda: [*installed, *extra])


@pytest.fixture
def ordered_samples(monkeypatch):
    """Two plugins, alpha and beta, that record every hook call in CALLS."""
    installed = manager.plugin_entry_points()
    extra = [EntryPoint(name, f"{SAMPLES}:{name.title()}Sample", manager.ENTRY_POINT_GROUP)
             for name in ("alpha", "beta")]
    monkeypatch.setattr(manager, "plugin_entry_points", lambda: [*installed, *extra])
    plugin_samples.CALLS.clear()
    return plugin_samples.CALLS


@pytest.fixture
def leaderboard_installed():
    """The example third-party plugin, a real distribution that the test command
    always installs: its absence is a failure, never a skip."""
    if "leaderboard" not in manager.available_plugins():
        pytest.fail("flask-core-redis-leaderboard is not installed; bash scripts/test "
                    "installs it (pip install -e plugins/flask-core-redis-leaderboard)")


BUILTINS = ["presence", "otp", "cache"]  # in an order of their own, as REDIS_PLUGINS


def test_every_installed_plugin_is_enabled_by_default_in_name_order(
        leaderboard_installed, make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})  # no plugin key at all
    with app.app_context():
        assert list(ext.plugins) == ["cache", "leaderboard", "otp", "presence"]
        assert ext.presence is ext.plugins["presence"]
        assert ext.otp is ext.plugins["otp"] and ext.cache is ext.plugins["cache"]
        assert ext.leaderboard is ext.plugins["leaderboard"]


def test_built_ins_come_from_the_projects_own_entry_points():
    ours = {entry.name: entry.value for entry in manager.plugin_entry_points()
            if entry.dist is not None and entry.dist.name == "flask-core-redis"}
    assert ours == {"cache": "flask_core_redis.plugins.cache:CachePlugin",
                    "otp": "flask_core_redis.plugins.otp:OtpPlugin",
                    "presence": "flask_core_redis.plugins.presence:PresencePlugin"}


def test_plugin_by_class_returns_the_apps_typed_instance(leaderboard_installed, make_app,
                                                         memory_url):
    from flask_core_redis_leaderboard import LeaderboardPlugin

    from flask_core_redis.plugins.cache import CachePlugin
    from flask_core_redis.plugins.presence import PresencePlugin

    app, ext = make_app({"REDIS_URL": memory_url})
    other, _ = make_app({"REDIS_URL": memory_url, "REDIS_PLUGINS": "cache"})
    with app.app_context():
        assert ext.plugin(PresencePlugin) is ext.plugins["presence"]
        assert ext.plugin(LeaderboardPlugin) is ext.plugins["leaderboard"]
    with other.app_context(), pytest.raises(
            RuntimeError, match=r"no enabled plugin is a 'PresencePlugin'; enabled: "
                                r"cache \(CachePlugin\) \(see REDIS_PLUGINS"):
        ext.plugin(PresencePlugin)
    runs = []
    cached = ext.plugin(CachePlugin).cached(ttl=60)(lambda: runs.append(1) or len(runs))
    with app.app_context():  # decorated outside any app, run inside one
        assert [cached(), cached()] == [1, 1]
    with pytest.raises(RuntimeError, match="outside an application context"):
        ext.plugin(PresencePlugin)


def test_an_unknown_attribute_is_an_attribute_error(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context(), pytest.raises(AttributeError, match="no installed plugin is "
                                                                "named 'clinet'"):
        _ = ext.clinet
    assert not hasattr(ext, "clinet") and not hasattr(ext, "_private")


def test_each_app_gets_its_own_plugin_instances(make_app, memory_url):
    app_a, ext = make_app({"REDIS_URL": memory_url})
    app_b = Flask("b")
    app_b.config.update(SECRET_KEY="s", REDIS_URL=memory_url)
    ext.init_app(app_b)
    with app_a.app_context():
        presence_a = ext.presence
    with app_b.app_context():
        assert ext.presence is not presence_a
        ext.close()


@pytest.mark.parametrize("config", [
    {"REDIS_PLUGINS": "cache, presence"},
    {"REDIS_PLUGINS": ["cache", "presence"]},
    {"REDIS_PLUGINS": "cache,presence,otp", "REDIS_DISABLED_PLUGINS": ["otp"]},
])
def test_plugins_and_disabled_plugins_select_what_runs(make_app, memory_url, config):
    app, ext = make_app({"REDIS_URL": memory_url, **config})
    with app.app_context():
        assert sorted(ext.plugins) == ["cache", "presence"]
        with pytest.raises(RuntimeError, match="'otp' plugin is not enabled"):
            _ = ext.otp


def test_disabled_plugins_from_the_environment(make_app, memory_url, monkeypatch):
    monkeypatch.setenv("REDIS_DISABLED_PLUGINS", "otp,presence")
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        assert "otp" not in ext.plugins and "presence" not in ext.plugins


@pytest.mark.parametrize("key", ["REDIS_PLUGINS", "REDIS_DISABLED_PLUGINS"])
def test_unknown_plugin_names_are_configuration_errors(make_app, memory_url, key):
    with pytest.raises(ConfigurationError, match=rf"{key} names unknown plugin\(s\) "
                                                 r"nope; available: cache, .*otp, presence"):
        make_app({"REDIS_URL": memory_url, key: "cache,nope"})


def test_a_plugin_failing_setup_fails_init_app_naming_it(samples, memory_url):
    app = Flask("boom-app")
    app.config.update(SECRET_KEY="s", REDIS_URL=memory_url, REDIS_PLUGINS="cache,boom")
    with pytest.raises(PluginError, match="plugin 'boom' failed in core_redis_setup: "
                                          "RuntimeError: cannot start without its own database"):
        CoreRedis(app)
    assert "REDIS" not in app.extensions.get("core_redis", {})


@pytest.mark.integration
def test_every_hook_reaches_the_plugin(samples, make_app, redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}",
                         "REDIS_PLUGINS": "cache,recorder"})
    with app.app_context():
        recorder = ext.plugins["recorder"]
        ext.client.ping()
        ext.cache.set("k", {"v": 1})
        raw = [ext.client.get(key) for key in ext.client.scan_iter(match="{cache:default}:*k")]
        report = ext.health()
        ext.close()
    assert recorder.calls[0] == ("setup", app.name)
    assert recorder.calls[1][0] == "client_created"
    assert ("event", "connect") in recorder.calls
    assert ("closing", app.name) in recorder.calls
    assert report["plugins"]["recorder"]["ok"] is True
    assert any(value.endswith('tagged:{"v": 1}') for value in raw), raw  # its serializer
    result = app.test_cli_runner().invoke(args=["redis", "recorder-hello"])
    assert result.output == "hello from the recorder\n"


def test_a_failing_health_contribution_is_reported_not_raised(samples, make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_PLUGINS": "unhealthy"})
    with app.app_context():
        report = ext.health()
    assert report["ok"] is False
    assert report["plugins"]["unhealthy"] == {
        "ok": False, "error": "RuntimeError: lost its marbles"}


def test_plugins_never_see_credentials(samples, make_app):
    app, ext = make_app({"REDIS_URL": "redis://app:hunter2@127.0.0.1:1",
                         "REDIS_SENTINEL_PASSWORD": "s3ntinel", "REDIS_PLUGINS": "recorder"})
    with app.app_context():
        context = ext.plugins["recorder"].context
    shown = f"{context!r} {context.settings} {vars(context).keys()}"
    assert "hunter2" not in shown and "s3ntinel" not in shown
    assert context.settings["password"] == "***"


def test_cli_lists_plugins_with_version_origin_and_hooks(make_app, memory_url):
    app, _ = make_app({"REDIS_URL": memory_url, "REDIS_PLUGINS": BUILTINS})
    lines = app.test_cli_runner().invoke(args=["redis", "plugins"]).output.splitlines()
    assert [line.split()[0] for line in lines] == BUILTINS
    assert lines[0].startswith("presence 0.1.0 [flask-core-redis] hooks: ")
    assert "setup" in lines[0] and "commands" in lines[0] and "health" in lines[0]


def test_third_party_plugin_is_discovered_through_its_entry_point(
        leaderboard_installed, mode_app):
    app, ext = mode_app()
    with app.app_context():
        board = ext.plugins["leaderboard"]
        board.add("weekly", "ann", 120)
        board.incr("weekly", "bob", 5)
        board.incr("weekly", "bob", 200)
        assert board.top("weekly", 2) == [("bob", 205.0), ("ann", 120.0)]
        assert board.rank("weekly", "ann") == 1 and board.rank("weekly", "eve") is None
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["redis", "plugins"]).output
    assert "leaderboard 0.1.0 [flask-core-redis-leaderboard]" in listed
    top = runner.invoke(args=["redis", "leaderboard", "top", "weekly", "--n", "1"])
    assert top.output == "1. bob 205\n"
    assert "leaderboard" in runner.invoke(args=["redis", "--help"]).output


def test_third_party_plugin_can_be_disabled(leaderboard_installed, make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_DISABLED_PLUGINS": "leaderboard"})
    with app.app_context():
        assert "leaderboard" not in ext.plugins
    result = app.test_cli_runner().invoke(args=["redis", "leaderboard", "top", "weekly"])
    assert result.exit_code != 0 and "No such command 'leaderboard'" in result.output


HOOKS = ("setup", "client_created", "connection_event", "commands", "health", "closing")


@pytest.mark.parametrize(("plugins", "order"), [
    ("beta,alpha,cache", ["beta", "alpha"]),   # REDIS_PLUGINS' order
    ("alpha,beta,cache", ["alpha", "beta"]),
    (None, ["alpha", "beta"]),                 # unset: every plugin, in name order
])
def test_every_hook_runs_in_one_order_and_the_first_serializer_wins(
        ordered_samples, make_app, memory_url, plugins, order):
    config = {"REDIS_URL": memory_url} | ({"REDIS_PLUGINS": plugins} if plugins else {})
    app, ext = make_app(config)
    with app.app_context():
        ext.client.ping()
        ext.events.emit("retry", address="somewhere", attempt=1, delay_ms=50)
        ext.plugin(plugin_samples.AlphaSample)  # enabled
        ext.cache.set("k", [1])
        stored = ext.client.get(next(ext.client.scan_iter(match="{cache:default}:k")))
        assert ext.cache.get("k") == [1]
        ext.health()
        app.test_cli_runner().invoke(args=["redis", "--help"])
        ext.close()
    for hook in HOOKS:  # once per call of the hook (two clients: the shared one, health's)
        called = [name for hook_called, name in ordered_samples if hook_called == hook]
        assert called and called == order * (len(called) // len(order)), hook
    assert [name for called, name in ordered_samples if called == "serializer"] == order[:1]
    assert stored.split(":", 3)[3].startswith(f"{order[0]}|")


def test_a_failing_hook_is_named_and_the_client_is_not_kept_unannounced(samples, make_app,
                                                                        memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_PLUGINS": "broken"})
    with app.app_context():
        for _ in range(2):  # the second try fails alike: no client kept half-announced
            with pytest.raises(PluginError, match="plugin 'broken' failed in "
                                                  "core_redis_client_created: AttributeError"):
                _ = ext.client


def test_hook_wrappers_are_refused_with_the_plugins_name(samples, memory_url):
    app = Flask("wrapped")
    app.config.update(REDIS_URL=memory_url, REDIS_PLUGINS="wrapper")
    with pytest.raises(PluginError, match="plugin 'wrapper' wraps core_redis_health; hook "
                                          "wrappers are not supported"):
        CoreRedis(app)


def test_hasattr_answers_for_plugins_that_are_not_there(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_DISABLED_PLUGINS": "otp"})
    assert not hasattr(ext, "otp")  # outside an app context
    with app.app_context():
        assert not hasattr(ext, "otp") and hasattr(ext, "presence")
        with pytest.raises(RuntimeError, match="'otp' plugin is not enabled on this app"):
            _ = ext.otp


def test_dir_lists_the_enabled_plugins_inside_an_app_context(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_PLUGINS": "cache, presence"})
    outside = dir(ext)  # no app: the class's own names only, and no error
    assert {"get_client", "health", "publish"} <= set(outside)
    assert not {"cache", "presence", "otp"} & set(outside)
    with app.app_context():
        inside = dir(ext)
        assert {"cache", "presence", "get_client"} <= set(inside) and "otp" not in inside
        assert all(hasattr(ext, name) for name in ("cache", "presence"))
    with Flask("unregistered").app_context():
        assert "cache" not in dir(ext)


def test_the_caches_import_time_stand_in_says_what_to_do_outside_an_app(make_app,
                                                                        memory_url):
    from flask_core_redis.plugins.cache import CachePlugin

    _, ext = make_app({"REDIS_URL": memory_url})
    cached = ext.cache.cached(ttl=60)(lambda: 42)
    for call in (cached, lambda: ext.cache.get("k"), lambda: ext.plugin(CachePlugin).get("k")):
        with pytest.raises(RuntimeError, match="outside an application context"):
            call()


@settings(max_examples=300, deadline=None)
@given(connect=st.integers(1, 60_000), read=st.one_of(st.none(), st.integers(1, 600_000)),
       retries=st.integers(0, 50), retry_deadline=st.one_of(st.none(), st.integers(1, 86_400_000)))
def test_a_reply_is_remembered_while_its_call_may_still_be_retried(connect, read, retries,
                                                                    retry_deadline):
    """A ONCE script's retry can arrive until the retries stop: after every
    counted try, or, under a deadline, up to the deadline plus one try (a
    reply read out of the window would let the script run twice)."""
    app = Flask(__name__)
    app.config.update(REDIS_URL="memory://", REDIS_CONNECT_TIMEOUT=connect,
                      REDIS_SOCKET_TIMEOUT=read, REDIS_MAX_RETRIES=retries,
                      REDIS_RETRY_DEADLINE=retry_deadline)
    ext = CoreRedis(app)
    with app.app_context():
        window = replay_window_ms(ext.settings.describe())
    one_try = connect + (connect if read is None else read)
    assert window >= MIN_REPLAY_MS
    if retry_deadline is None:
        assert window >= (retries + 1) * one_try
    else:
        assert window >= retry_deadline + one_try
