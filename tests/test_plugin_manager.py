"""The plugin system: discovery, enabling, hooks, CLI, isolation."""

from importlib.metadata import EntryPoint

import pytest
from flask import Flask

from flask_core_redis import ConfigurationError, CoreRedis, PluginError
from flask_core_redis.plugin_api import manager

SAMPLES = "tests.plugin_samples"


@pytest.fixture
def samples(monkeypatch):
    """Make the sample plugins available as entry points, beside the installed ones."""
    installed = manager.plugin_entry_points()
    extra = [EntryPoint(name, f"{SAMPLES}:{attribute}", manager.ENTRY_POINT_GROUP)
             for name, attribute in (("recorder", "RecordingPlugin"), ("boom", "BoomPlugin"),
                                     ("unhealthy", "UnhealthyPlugin"))]
    monkeypatch.setattr(manager, "plugin_entry_points", lambda: [*installed, *extra])


@pytest.fixture
def leaderboard_installed():
    """The example third-party plugin, a real distribution that the test command
    always installs: its absence is a failure, never a skip."""
    if "leaderboard" not in manager.available_plugins():
        pytest.fail("flask-core-redis-leaderboard is not installed; bash scripts/test "
                    "installs it (pip install -e plugins/flask-core-redis-leaderboard)")


BUILTINS = ["presence", "otp", "cache"]


def test_builtins_are_ordinary_plugins_enabled_by_default(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_PLUGINS": BUILTINS})
    with app.app_context():
        assert list(ext.plugins) == BUILTINS
        assert ext.presence is ext.plugins["presence"]
        assert ext.otp is ext.plugins["otp"] and ext.cache is ext.plugins["cache"]


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
    with pytest.raises(PluginError, match="plugin 'boom' failed to set up: RuntimeError: "
                                          "cannot start without its own database"):
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
