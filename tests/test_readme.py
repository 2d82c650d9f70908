"""The README's examples run as written."""

import re
import subprocess
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from flask_core_redis import ConfigurationError, RedisUnavailable
from flask_core_redis.integrations.queues import queue
from flask_core_redis.plugin_api import manager

README = Path(__file__).resolve().parent.parent / "README.md"


def first_python_block() -> str:
    return re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)


@pytest.mark.parametrize("server", ["memory", pytest.param("real", marks=pytest.mark.integration)])
def test_the_first_usage_example_runs_as_written(request, server, tmp_path, key):
    url = "memory://readme"
    if server == "real":
        url = f"redis://{request.getfixturevalue('redis_server').address}"
    check = (f"\nwith app.app_context():\n    assert redis_ext.client.get('greeting') == 'hello'"
             f"\n    redis_ext.client.rename('greeting', {key!r})\n")
    environment = {"REDIS_URL": url, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", first_python_block() + check], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    if server == "real":
        with request.getfixturevalue("redis_server").client() as admin:
            assert admin.get(key) == "hello"  # it reached the configured server


def block_after(heading: str) -> str:
    text = README.read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S).group(1)


def test_the_plugin_in_writing_a_plugin_works_as_written(make_app, memory_url, monkeypatch):
    module = types.ModuleType("readme_visits")
    exec(compile(block_after("### Writing a plugin"), "README.md", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "readme_visits", module)
    installed = manager.plugin_entry_points()
    monkeypatch.setattr(manager, "plugin_entry_points", lambda: [*installed, EntryPoint(
        "visits", "readme_visits:VisitCounter", manager.ENTRY_POINT_GROUP)])
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_VISITS_TTL": "90",
                         "REDIS_KEY_PREFIX": "shop:"})
    with app.app_context():
        counter = ext.plugin(module.VisitCounter)
        assert [counter.hit("/"), counter.hit("/"), counter.hit("/about")] == [1, 2, 1]
        assert 0 < ext.client.ttl("shop:visits:/") <= 90
        assert ext.health()["plugins"]["visits"] == {"ok": True}
    with pytest.raises(ConfigurationError, match="REDIS_VISITS_TTL='never' is invalid"):
        make_app({"REDIS_URL": memory_url, "REDIS_VISITS_TTL": "never"})


# The recipes of "Using it with the Flask ecosystem", run as written ------------

def run_recipe(heading, app, ext):
    """Run the block under ``heading`` with the README's names bound."""
    names = {"app": app, "redis_ext": ext}
    exec(compile(block_after(heading), "README.md", "exec"), names)
    return names


@pytest.mark.ecosystem
@pytest.mark.usefixtures("refuse_default_port")
def test_the_flask_session_recipe(mode_app):
    app, ext = mode_app()
    run_recipe("### Flask-Session", app, ext)

    @app.get("/visit")
    def visit():
        from flask import session

        session["visits"] = session.get("visits", 0) + 1
        return {"visits": session["visits"]}

    web = app.test_client()
    assert [web.get("/visit").get_json()["visits"] for _ in range(2)] == [1, 2]
    sid = web.get_cookie("session").value
    with app.app_context():
        raw = ext.get_client(decode_responses=False)
        assert raw.exists(f"{ext.settings.key_prefix}session:{sid}")


@pytest.mark.ecosystem
@pytest.mark.usefixtures("refuse_default_port")
def test_the_flask_caching_recipe(mode_app):
    app, ext = mode_app()
    cache = run_recipe("### Flask-Caching", app, ext)["cache"]
    with app.app_context():
        cache.set("report", {"rows": [1, 2]})
        assert cache.get("report") == {"rows": [1, 2]}
        assert ext.get_client(decode_responses=False).exists("cache:report")


@pytest.mark.ecosystem
@pytest.mark.usefixtures("refuse_default_port")
def test_the_flask_limiter_recipe(mode_app):
    app, ext = mode_app()
    limiter = run_recipe("### Flask-Limiter", app, ext)["limiter"]

    @app.get("/login")
    @limiter.limit("1/minute")
    def login():
        return "form"

    web = app.test_client()
    assert [web.get("/login").status_code for _ in range(2)] == [200, 429]
    with app.app_context():
        assert list(ext.get_client(decode_responses=False).scan_iter(
            match=f"{ext.settings.key_prefix}LIMITS:*"))


@pytest.mark.integration
@pytest.mark.ecosystem
@pytest.mark.usefixtures("refuse_default_port")
def test_the_rq_dashboard_recipe(make_app, redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}"})
    run_recipe("### RQ and rq-dashboard", app, ext)
    with app.app_context():
        queue(ext, "readme-recipe").enqueue("tests.jobs.add", 1, 2)
    queues = app.test_client().get("/rq/0/data/queues.json").get_json()["queues"]
    assert {"name": "readme-recipe", "count": 1} in [
        {"name": q["name"], "count": q["count"]} for q in queues]
    with app.app_context():
        queue(ext, "readme-recipe").empty()


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["standalone", "sentinel"])
@pytest.mark.ecosystem
@pytest.mark.usefixtures("refuse_default_port")
def test_the_celery_recipe(request, make_app, mode, key):
    if mode == "standalone":
        server = request.getfixturevalue("redis_server")
        url = f"redis://{server.address}/4"
    else:
        deployment = request.getfixturevalue("sentinel")
        server, url = deployment.process_on(deployment.master_port()), deployment.url + "/4"
    app, ext = make_app({"REDIS_URL": url})
    celery = run_recipe("### Celery (kombu)", app, ext)["celery"]
    with celery.connection_for_write() as connection, connection.SimpleQueue(key) as queue:
        queue.put("hello")
        with server.client(db=4) as admin:
            assert admin.llen(key) == 1  # in the app's server and database
        assert queue.get(timeout=10).payload == "hello"


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["sentinel", "standalone"])
@pytest.mark.usefixtures("refuse_default_port")
def test_the_write_that_waits_for_a_replica(request, make_app, mode, key):
    if mode == "sentinel":
        deployment = request.getfixturevalue("sentinel")
        url = deployment.url
    else:
        url = f"redis://{request.getfixturevalue('redis_server').address}"
    app, ext = make_app({"REDIS_URL": url})
    incr_on_a_replica = run_recipe("### Writes that must survive a failover", app,
                                   ext)["incr_on_a_replica"]
    with app.app_context():
        if mode == "standalone":  # no replica to wait for: refused, never acknowledged
            with pytest.raises(RedisUnavailable, match="no replica has the write"):
                incr_on_a_replica(key)
            assert ext.client.get(key) == "1"  # though the master applied it
            return
        assert incr_on_a_replica(key) == 1
    master_port = deployment.master_port()
    replica = next(p for p in (deployment.master, deployment.replica)
                   if p.front_port != master_port)
    with replica.client() as admin:
        assert admin.get(key) == "1"  # on the replica when acknowledged
