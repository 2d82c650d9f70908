"""The README's examples run as written."""

import re
import subprocess
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from flask_core_redis import ConfigurationError
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
