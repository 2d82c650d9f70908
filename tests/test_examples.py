"""Every Python block of the README and the docs runs as written, on the
servers its mark names (see tests/examples.py); the run's count of blocks run
and blocks not run, by reason, is printed at the end of the session."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_core_redis import CoreRedis
from flask_core_redis.state.apps import is_quart

from .conftest import is_configuration
from .examples import BadMark, Block, Chain, blocks_of, chains, every_block
from .servers import refusing_default_port

BLOCKS = every_block()
CHAINS = chains(BLOCKS)
#: The libraries of the ecosystem extra, and the integrations that need them,
#: left out of the passes without it.
_ECOSYSTEM = re.compile(r"^\s*(from|import)\s+(flask_session|flask_caching|flask_limiter|"
                        r"flask_debugtoolbar|celery|kombu|rq_dashboard|flask_core_redis\."
                        r"integrations\.(sessions|limiter|kombu_broker|rq_dashboard|"
                        r"debug_toolbar))\b", re.M)
#: Quart (Flask >= 3), left out of the lowest versions' pass.
_QUART = re.compile(r"^\s*(from|import)\s+quart\b", re.M)


def _cases() -> Iterator[Any]:
    for chain in CHAINS:
        marks = [mark for mark, pattern in ((pytest.mark.ecosystem, _ECOSYSTEM),
                                            (pytest.mark.quart, _QUART))
                 if any(pattern.search(block.code) for block in chain.blocks)]
        for target in chain.targets:
            extra = [] if target == "memory" else [pytest.mark.integration]
            yield pytest.param(chain, target, marks=[*marks, *extra],
                               id=f"{chain.name}-{target}")


def _environment(request: pytest.FixtureRequest, target: str) -> dict[str, str]:
    if target == "memory":
        return {"REDIS_URL": f"memory://example-{uuid.uuid4().hex}"}
    if target == "redis":
        return {"REDIS_URL": f"redis://{request.getfixturevalue('own_redis_server').address}"}
    if target == "tls":
        server = request.getfixturevalue("tls_server")
        return {"REDIS_URL": f"rediss://{server.address}",
                **request.getfixturevalue("tls_files").config()}
    if target == "sentinel":
        sentinel = request.getfixturevalue("sentinel")
        return {"REDIS_SENTINELS": sentinel.sentinel_addresses,
                "REDIS_SENTINEL_MASTER": sentinel.master_name}
    cluster = request.getfixturevalue("cluster")
    return {"REDIS_CLUSTER_NODES": ",".join(node.address for node in cluster.nodes[:3])}


def _close_extensions(namespace: dict[str, Any]) -> None:
    """Close what the example's apps, Flask's or Quart's, opened (pools, watches)."""
    apps = [value for value in namespace.values()
            if isinstance(value, Flask) or is_quart(value)]
    extensions = [value for value in namespace.values() if isinstance(value, CoreRedis)]
    for app in apps:
        for ext in extensions:
            if ext.config_prefix in app.extensions.get("core_redis", {}):
                _close(app, ext)


def _close(app: Any, ext: CoreRedis) -> None:
    if not is_quart(app):
        with app.app_context():
            ext.close()
        return

    async def close_in_quart_app_context() -> None:
        async with app.app_context():
            await ext.aclose()

    asyncio.run(close_in_quart_app_context())


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    # Padded so a traceback names the line of the Markdown file.
    code = "\n" * block.line + block.code
    exec(compile(code, block.page, "exec"), namespace)


@pytest.mark.parametrize(("chain", "target"), list(_cases()))
def test_the_example_runs_as_written(request: pytest.FixtureRequest, chain: Chain,
                                     target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if is_configuration(name)]:
        monkeypatch.delenv(name)
    for name, value in _environment(request, target).items():
        monkeypatch.setenv(name, value)
    namespace: dict[str, Any] = {"__name__": "__example__"}
    with refusing_default_port() as attempts:
        try:
            for block in chain.blocks:
                run_block(block, namespace)
        finally:
            _close_extensions(namespace)
    assert not attempts, f"the example tried to connect to {attempts}"


def test_the_docs_hold_examples_that_run() -> None:
    assert CHAINS, "no runnable Python block found in README.md and docs/"


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def test_marks_choose_servers_and_a_mark_nobody_knows_is_an_error(tmp_path: Path) -> None:
    """A typo in a mark would leave a block silently unrun: it is refused."""
    fence = "```python\nx = 1\n```\n"
    blocks = blocks_of(page(tmp_path, f"{fence}\n<!-- example: redis cluster -->\n{fence}"
                                      f"<!-- example: continues -->\n{fence}"
                                      f"<!-- example: not run (a fragment) -->\n{fence}"))
    assert [(b.targets, b.continues, b.not_run) for b in blocks] == [
        (("memory",), False, None), (("redis", "cluster"), False, None),
        ((), True, None), ((), False, "a fragment")]
    assert [len(chain.blocks) for chain in chains(blocks)] == [1, 2]
    with pytest.raises(BadMark, match="unknown example mark 'rediss'"):
        blocks_of(page(tmp_path, f"<!-- example: rediss -->\n{fence}"))
    with pytest.raises(BadMark, match="'continues' follows no block that runs"):
        chains(blocks_of(page(tmp_path, f"<!-- example: not run (x) -->\n{fence}"
                                        f"<!-- example: continues -->\n{fence}")))
