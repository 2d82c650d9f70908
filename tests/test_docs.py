"""What the docs promise beyond "the example runs": the index leads to the
pages a newcomer needs first, the plugin of "Writing a plugin" works once
installed, and the write that waits for a replica is on the replica when it
is acknowledged."""

import asyncio
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from flask_core_redis import ConfigurationError
from flask_core_redis.plugin_api import manager

from .examples import blocks_of
from .test_readme import heading_anchors

DOCS = Path(__file__).resolve().parent.parent / "docs"


def block_under(page: str, heading: str) -> str:
    """The first Python block after ``heading`` on a docs page."""
    text = (DOCS / page).read_text()
    heading_line = text[:text.index(heading)].count("\n") + 1
    return next(block.code for block in blocks_of(DOCS / page) if block.line > heading_line)


@pytest.mark.parametrize(("page", "anchor"), [("installation.md", None),
                                              ("connecting.md", "sentinel"),
                                              ("production.md", None)])
def test_the_index_reaches_the_first_pages_in_one_click(page, anchor):
    index = (DOCS / "index.md").read_text()
    link = f"]({page}{'#' + anchor if anchor else ''})"
    assert link in index, f"docs/index.md has no link {link}"
    assert anchor is None or anchor in heading_anchors(DOCS / page)


def test_the_first_plugin_of_writing_a_plugin_works_once_installed(make_app, memory_url,
                                                                    monkeypatch):
    module = types.ModuleType("docs_visits")
    exec(compile(block_under("writing-plugins.md", "## A first plugin"),
                 "writing-plugins.md", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "docs_visits", module)
    installed = manager.plugin_entry_points()
    monkeypatch.setattr(manager, "plugin_entry_points", lambda: [*installed, EntryPoint(
        "visits", "docs_visits:VisitCounter", manager.ENTRY_POINT_GROUP)])
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_VISITS_TTL": "90",
                         "REDIS_KEY_PREFIX": "shop:"})
    with app.app_context():
        counter = ext.plugin(module.VisitCounter)
        assert [counter.hit("/"), counter.hit("/"), counter.hit("/about")] == [1, 2, 1]
        assert asyncio.run(counter.ahit("/")) == 3  # the same logic, from async code
        assert 0 < ext.client.ttl("shop:visits:/") <= 90
        assert ext.health()["plugins"]["visits"] == {"ok": True}
    with pytest.raises(ConfigurationError, match="REDIS_VISITS_TTL='never' is invalid"):
        make_app({"REDIS_URL": memory_url, "REDIS_VISITS_TTL": "never"})


@pytest.mark.integration
@pytest.mark.usefixtures("refuse_default_port")
def test_an_acknowledged_write_that_waits_is_on_the_replica(sentinel, monkeypatch):
    monkeypatch.setenv("REDIS_URL", sentinel.url)
    names = {"__name__": "__docs__"}
    exec(compile(block_under("failure-behaviour.md", "## Writes that must survive"),
                 "failure-behaviour.md", "exec"), names)
    app, redis_ext = names["app"], names["redis_ext"]
    key = f"orders:{id(names)}"
    try:
        with app.app_context():
            assert names["incr_on_a_replica"](key) == 1
            master = redis_ext.client.connection_pool.master_address[1]
    finally:
        with app.app_context():
            redis_ext.close()
    replica = next(p for p in (sentinel.master, sentinel.replica) if p.front_port != master)
    with replica.client() as admin:
        assert admin.get(key) == "1"  # on the replica once acknowledged
