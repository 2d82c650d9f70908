"""Shared fixtures: isolation from the machine's configuration, Flask apps on
the embedded server, and real Redis servers started on free loopback ports for
the whole session (or per test, for the tests that kill them)."""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_core_redis import CoreRedis

from .servers import (
    SERVER,
    SERVER_VARIABLE,
    ClusterDeployment,
    RedisProcess,
    SentinelDeployment,
    TlsFiles,
    free_port,
    refusing_default_port,
)
from .telemetry_support import Recorded, fresh_providers, reset_opentelemetry

ACL_USER, ACL_PASSWORD = "app", "acl-s3cret-pw"
REQUIRE_PASSWORD = "requirepass-s3cret"

AppFactory = Callable[..., tuple[Flask, CoreRedis]]


def pytest_report_header() -> str:
    tls = "valkey (Debian's build, with TLS)" if SERVER == "valkey" else "redis"
    return (f"integration servers: {SERVER} ({SERVER_VARIABLE}=redis|valkey); "
            f"TLS servers: {tls}")


#: Whether the tests of the Flask extensions (marker ``ecosystem``) run:
#: ``no`` leaves them out, for a pass on a redis-py those extensions' own
#: caps keep out of their environment (scripts/test's pass on the newest one).
ECOSYSTEM_VARIABLE = "FLASK_CORE_REDIS_TEST_ECOSYSTEM"
WITH_ECOSYSTEM = os.environ.get(ECOSYSTEM_VARIABLE, "yes") != "no"
#: Whether the Quart tests (marker ``quart``) run: ``no`` leaves them out,
#: for the lowest versions' pass, whose Flask 2.3 Quart does not run on.
QUART_VARIABLE = "FLASK_CORE_REDIS_TEST_QUART"
WITH_QUART = os.environ.get(QUART_VARIABLE, "yes") != "no"
collect_ignore_glob = ([] if WITH_ECOSYSTEM else ["test_ecosystem_*.py"]) + (
    [] if WITH_QUART else ["test_example_quart.py"])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On Valkey only the integration tests run: the others start no server,
    and running them again would test nothing new. Without the ecosystem,
    its tests are left out; without Quart, Quart's."""
    def kept(item: pytest.Item) -> bool:
        return ((SERVER == "redis" or item.get_closest_marker("integration") is not None)
                and (WITH_ECOSYSTEM or item.get_closest_marker("ecosystem") is None)
                and (WITH_QUART or item.get_closest_marker("quart") is None))

    dropped = [item for item in items if not kept(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = [item for item in items if kept(item)]


def is_configuration(name: str) -> bool:
    """An environment variable that would configure an app under test: every
    Redis key of any prefix (REDIS_*, CACHE_REDIS_*, ...) and SECRET_KEY."""
    return "REDIS" in name.upper() or name == "SECRET_KEY"


@pytest.fixture(scope="session", autouse=True)
def isolated_environment() -> Iterator[None]:
    """No test, and no process a test starts, sees the configuration of the
    shell that runs the suite; Flask's CLI in those processes loads no .env."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if is_configuration(name)]:
            patch.delenv(name)
        patch.setenv("FLASK_SKIP_DOTENV", "1")
        yield


@pytest.fixture(autouse=True)
def outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in a folder of its own, with an empty .env: configuration
    reads the first .env found from the working folder up, so none in the
    checkout, in /tmp or anywhere above is ever read."""
    (tmp_path / ".env").touch()
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def opentelemetry_reset() -> Iterator[None]:
    """No test leaves a global meter or tracer provider, or the extension's
    instruments made for one, to the next (a docs example sets its own)."""
    yield
    reset_opentelemetry()


@pytest.fixture
def otel() -> Iterator[Recorded]:
    """Fresh global OpenTelemetry providers that keep what they record:
    build the app after asking for it."""
    yield fresh_providers()


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """Build a Flask app with CoreRedis from config keys; closes its clients after."""
    made: list[tuple[Flask, CoreRedis]] = []

    def factory(config: dict[str, Any] | None = None, *, prefix: str = "REDIS",
                **options: Any) -> tuple[Flask, CoreRedis]:
        app = Flask(f"test-{uuid.uuid4().hex[:8]}")
        app.config.update({"TESTING": True, "SECRET_KEY": "test-secret-key", **(config or {})})
        ext = CoreRedis(app, config_prefix=prefix, **options)
        made.append((app, ext))
        return app, ext

    yield factory
    for app, ext in made:
        with app.app_context():
            ext.close()


@pytest.fixture
def refuse_default_port() -> Iterator[None]:
    """Fail the test if anything in this process tried to connect to port
    6379, where the extensions fall back to when a setting is wrong, even if
    the error was swallowed (Flask-Caching logs backend errors and goes on)."""
    with refusing_default_port() as attempts:
        yield
    assert not attempts, f"something tried to connect to {attempts}"


@pytest.fixture
def memory_url() -> str:
    """A fresh embedded server per test."""
    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture
def key() -> str:
    """A key name no other test uses, so shared servers need no flushing."""
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
def events_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("redis")


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisProcess]:
    """Plain TCP, plus a unix socket at ``workdir / "redis.sock"``."""
    server = RedisProcess(workdir, free_port(), [
        "--unixsocket", str(workdir / "redis.sock"), "--unixsocketperm", "700"]).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A server for one test, which may stop, pause or restart it."""
    server = RedisProcess(tmp_path, free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_server(workdir: Path) -> Iterator[RedisProcess]:
    """requirepass for the default user, plus an ACL user."""
    server = RedisProcess(
        workdir, free_port(),
        ["--requirepass", REQUIRE_PASSWORD,
         "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"],
        client_kwargs={"password": REQUIRE_PASSWORD}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_files(workdir: Path) -> TlsFiles:
    return TlsFiles(workdir)


@pytest.fixture(scope="session")
def tls_server(workdir: Path, tls_files: TlsFiles) -> Iterator[RedisProcess]:
    """TLS only (no plain port), client certificates required."""
    server = RedisProcess(workdir, free_port(), tls=tls_files).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sentinel(workdir: Path) -> Iterator[SentinelDeployment]:
    deployment = SentinelDeployment(workdir / "sentinel")
    yield deployment
    deployment.stop()


@pytest.fixture
def own_sentinel(tmp_path: Path) -> Iterator[SentinelDeployment]:
    """A Sentinel deployment for one test, which may fail it over."""
    deployment = SentinelDeployment(tmp_path)
    yield deployment
    deployment.stop()


@pytest.fixture(scope="session")
def cluster(workdir: Path) -> Iterator[ClusterDeployment]:
    deployment = ClusterDeployment(workdir / "cluster")
    yield deployment
    deployment.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[ClusterDeployment]:
    """A cluster for one test, which may kill a master."""
    deployment = ClusterDeployment(tmp_path)
    yield deployment
    deployment.stop()


@pytest.fixture(scope="session")
def tls_sentinel(workdir: Path, tls_files: TlsFiles) -> Iterator[SentinelDeployment]:
    """Data nodes, replication and sentinels all on TLS only."""
    deployment = SentinelDeployment(workdir / "tls-sentinel", tls_files)
    yield deployment
    deployment.stop()


@pytest.fixture
def own_tls_sentinel(tmp_path: Path, tls_files: TlsFiles) -> Iterator[SentinelDeployment]:
    """A TLS Sentinel deployment for one test, which may fail it over."""
    deployment = SentinelDeployment(tmp_path, tls_files)
    yield deployment
    deployment.stop()


@pytest.fixture(params=["tls-sentinels-plain-data", "plain-sentinels-tls-data"])
def mixed_sentinel(request: pytest.FixtureRequest, tmp_path: Path,
                   tls_files: TlsFiles) -> Iterator[SentinelDeployment]:
    """Sentinels and data nodes of which only one side is on TLS."""
    tls_sentinels = request.param == "tls-sentinels-plain-data"
    deployment = SentinelDeployment(tmp_path, tls_files, tls_data=not tls_sentinels,
                                    tls_sentinels=tls_sentinels)
    yield deployment
    deployment.stop()


@pytest.fixture(scope="session")
def tls_cluster(workdir: Path, tls_files: TlsFiles) -> Iterator[ClusterDeployment]:
    """Nodes, cluster bus and replication all on TLS only."""
    deployment = ClusterDeployment(workdir / "tls-cluster", tls_files)
    yield deployment
    deployment.stop()


@pytest.fixture
def own_tls_cluster(tmp_path: Path, tls_files: TlsFiles) -> Iterator[ClusterDeployment]:
    """A TLS cluster for one test, which may kill a master."""
    deployment = ClusterDeployment(tmp_path, tls_files)
    yield deployment
    deployment.stop()


MODES = [
    pytest.param("memory"),
    pytest.param("standalone", marks=pytest.mark.integration),
    pytest.param("sentinel", marks=pytest.mark.integration),
    pytest.param("cluster", marks=pytest.mark.integration),
]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs on memory, standalone, Sentinel and Cluster."""
    return str(request.param)


@pytest.fixture
def mode_app(request: pytest.FixtureRequest, mode: str, make_app: AppFactory) -> AppFactory:
    """Make an app on the current mode's server, under a key prefix of its own."""
    def url() -> str:
        if mode == "memory":
            return f"memory://{uuid.uuid4().hex}"
        if mode == "standalone":
            return f"redis://{request.getfixturevalue('redis_server').address}"
        return str(request.getfixturevalue(mode).url)

    address = url()

    def factory(config: dict[str, Any] | None = None, **options: Any) -> tuple[Flask, CoreRedis]:
        return make_app({"REDIS_URL": address, "REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}:",
                         **(config or {})}, **options)

    factory.url = address  # type: ignore[attr-defined]
    return factory


@pytest.fixture
def server_keys(request: pytest.FixtureRequest, mode: str, mode_app: AppFactory,
                make_app: AppFactory) -> Callable[[str], set[str]]:
    """The keys matching a pattern in the current mode's server, read by a
    client of the test's own: what an app wrote landed there (memory: a
    second app on the same embedded server)."""
    def clients() -> list[Any]:
        if mode == "memory":
            app, ext = make_app({"REDIS_URL": mode_app.url})  # type: ignore[attr-defined]
            with app.app_context():
                return [ext.client]
        if mode == "standalone":
            return [request.getfixturevalue("redis_server").client()]
        if mode == "sentinel":
            deployment = request.getfixturevalue("sentinel")
            return [deployment.process_on(deployment.master_port()).client()]
        return [node.client() for node in request.getfixturevalue("cluster").nodes]

    def find(pattern: str) -> set[str]:
        found: set[str] = set()
        for client in clients():
            with client:
                found.update(client.keys(pattern))
        return found

    return find


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many Python blocks of the README and the docs ran, and how many
    were left out by their mark, by reason (tests/test_examples.py)."""
    from .examples import chains, every_block

    blocks = every_block()
    runnable = {block.name for chain in chains(blocks) for block in chain.blocks}
    outcomes: Counter[str] = Counter()
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "test_the_example_runs_as_written" in getattr(report, "nodeid", "") and (
                    report.when == "call" or outcome != "passed"):
                outcomes[outcome] += 1
    if not sum(outcomes.values()):
        return
    not_run = Counter(block.not_run for block in blocks if block.not_run is not None)
    reasons = "; ".join(f"{reason}: {count}" for reason, count in sorted(not_run.items()))
    runs = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
    terminalreporter.write_line(
        f"examples: {len(blocks)} Python blocks in README.md and docs/: {len(runnable)} run "
        f"({runs}, one run per block chain and server), {sum(not_run.values())} not run by "
        f"mark" + (f" ({reasons})" if reasons else ""))
