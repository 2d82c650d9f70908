"""Async figures 2 and 3, served over HTTP and driven by the load generator
of :mod:`benchmarks.async_http` on one server:

2. requests per second of a Quart view doing one ``GET``, 50 concurrent
   connections, this extension against Quart-Redis (as installed, and on
   this venv's redis-py), each app under uvicorn (one worker, asyncio loop,
   h11) in a subprocess, in alternating rounds after a warm-up;
3. connections opened over 1,000 requests at 50 concurrent connections in
   each way of serving async views (Flask under werkzeug's threaded WSGI
   server, Flask through asgiref's ``WsgiToAsgi`` under uvicorn, Quart under
   uvicorn), with a pool of ``POOL`` connections: the registration's
   connect events."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from flask import Flask

from flask_core_redis import CoreRedis

from . import async_apps
from .async_http import (
    Load,
    ServerProcess,
    drive,
    uvicorn_process,
    uvicorn_thread,
    werkzeug_thread,
)
from .async_venv import quart_redis_alone, quart_redis_python, redis_py_version
from .measure import Report
from .topologies import Topology

CONCURRENCY = 50
WARMUP = 1_000  # requests per app before the measured rounds
REQUESTS = 1_500  # per app and round
ROUNDS = 10  # alternating, who goes first swapped every round
POOL = 10  # figure 3's REDIS_MAX_CONNECTIONS
THOUSAND = 1_000


def _checked(load: Load, what: str) -> Load:
    if load.failures:
        raise RuntimeError(f"{what}: {len(load.failures)} of {load.requests} requests failed, "
                           f"first: {load.failures[0]}")
    return load


# 2 -------------------------------------------------------------------------

@dataclass
class Served:
    """An app of figure 2: its label, the Python serving it, its factory,
    and folders put before the Python's own packages."""

    label: str
    python: str | Path
    factory: str
    path: tuple[Path, ...] = ()


def contenders() -> list[Served]:
    """This extension; Quart-Redis in its venv (redis-py < 6); Quart-Redis
    beside this extension on this venv's redis-py (outside its declared
    range), which leaves the extensions' own costs alone to differ."""
    return [Served("CoreRedis", sys.executable, "benchmarks.async_apps:core_redis"),
            Served("Quart-Redis", quart_redis_python(), "benchmarks.async_apps:quart_redis"),
            Served(f"Quart-Redis, redis-py {redis.__version__}", sys.executable,
                   "benchmarks.async_apps:quart_redis", (quart_redis_alone(),))]


def requests_per_second(top: Topology, report: Report) -> None:
    report.section(f"async 2. Quart view, one GET, {CONCURRENCY} concurrent: CoreRedis vs "
                   "Quart-Redis")
    name = "requests/s: CoreRedis vs Quart-Redis"
    try:
        apps = contenders()
    except (OSError, ValueError, RuntimeError) as error:  # CalledProcessError, no network
        report.row(name, "not measured (Quart-Redis not installed)", ">= 1.0x", "not measured")
        report.note(f"{type(error).__name__}: {str(error)[:200]}")
        return
    top.raw.set(async_apps.KEY, "v" * 64)
    with ExitStack() as stack:
        servers = [stack.enter_context(uvicorn_process(
            app.python, app.factory, {async_apps.URL_VARIABLE: f"redis://127.0.0.1:{top.port}",
                                      async_apps.NAME_VARIABLE: f"bench-{number}"},
            async_apps.PATH, app.path)) for number, app in enumerate(apps)]
        rounds = _alternate(servers, [app.label for app in apps])
        names = [client["name"] for client in top.raw.client_list()]
    for index, row, goal in ((1, name, ">= 1.0x"),
                             (2, f"requests/s: CoreRedis vs {apps[2].label}", "(info)")):
        rps = _medians([(shares[0].rps, shares[index].rps) for shares in rounds])
        cpu = _medians([(shares[0].cpu_us, shares[index].cpu_us) for shares in rounds])
        report.row(row, f"{rps[0]:.0f} vs {rps[1]:.0f} rps = {rps[2]:.3f}x", goal,
                   rps[2] >= 1.0 if index == 1 else None)
        report.note(f"server CPU per request: {cpu[0]:.0f} vs {cpu[1]:.0f} us = {cpu[2]:.3f}x "
                    "(the uvicorn process's user + system time)")
    report.note(f"{REQUESTS:,} requests x {ROUNDS} rounds (the order turned every round) after "
                f"{WARMUP:,} each, {CONCURRENCY} keep-alive connections, median of the "
                "per-round ratios; rps per round: " + ", ".join(
                    "/".join(f"{share.rps:.0f}" for share in shares) for shares in rounds))
    report.note("Redis connections open at the end (unbounded pools, the defaults): " + ", ".join(
        f"{app.label} {names.count(f'bench-{number}')}" for number, app in enumerate(apps)))
    report.note(f"Quart-Redis 3.0.0 in its venv on redis-py {redis_py_version(apps[1].python)}; "
                "the same Quart, Flask, Werkzeug, uvicorn and h11 everywhere")


@dataclass
class Round:
    """One app's share of a round."""

    rps: float
    cpu_us: float  # the server process's CPU time per request


def _alternate(servers: list[ServerProcess], labels: list[str]) -> list[list[Round]]:
    """Each server's share of each round (in the order given), after a
    warm-up of each; the order in which they are driven turns every round."""
    for server, label in zip(servers, labels, strict=True):
        _checked(drive(server.port, async_apps.PATH, WARMUP, CONCURRENCY), f"{label} warm-up")
    rounds = []
    for number in range(ROUNDS):
        turn = number % len(servers)
        order = list(range(len(servers)))[turn:] + list(range(len(servers)))[:turn]
        shares = {index: _round(servers[index], labels[index]) for index in order}
        rounds.append([shares[index] for index in range(len(servers))])
    return rounds


def _round(server: ServerProcess, what: str) -> Round:
    cpu = server.cpu_seconds()
    load = _checked(drive(server.port, async_apps.PATH, REQUESTS, CONCURRENCY), what)
    return Round(load.rps, (server.cpu_seconds() - cpu) * 1e6 / REQUESTS)


def _medians(pairs: list[tuple[float, float]]) -> tuple[float, float, float]:
    """The median of each side and of the per-round ratios."""
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(a / b for a, b in pairs))


# 3 -------------------------------------------------------------------------

def connections(top: Topology, report: Report) -> None:
    report.section(f"async 3. connections opened per {THOUSAND:,} requests, "
                   f"{CONCURRENCY} concurrent, REDIS_MAX_CONNECTIONS={POOL}")
    config = {"REDIS_URL": f"redis://127.0.0.1:{top.port}", "REDIS_MAX_CONNECTIONS": POOL,
              "REDIS_POOL_TIMEOUT": 10_000, "SECRET_KEY": "bench-secret-key-" + "x" * 32}
    # WsgiToAsgi gets a connection per request: on a kept-alive one, asgiref
    # (3.8 to 3.13 at least) runs the next request in the context of the
    # previous one's AsyncToSync, and it fails (see docs/benchmarks.md).
    modes: list[tuple[str, Callable[[], Any], Callable[[Any], AbstractContextManager[int]],
                      bool]] = [
        ("Flask async views, werkzeug threaded WSGI server", lambda: Flask("bench-wsgi"),
         werkzeug_thread, True),
        ("Flask through WsgiToAsgi, uvicorn", lambda: Flask("bench-wsgi-to-asgi"),
         _wsgi_to_asgi, False),
        ("Quart, uvicorn", _quart, uvicorn_thread, True),
    ]
    for name, make, serve, keep_alive in modes:
        app = make()
        app.config.update(config)
        ext = CoreRedis(app)
        state = app.extensions["core_redis"]["REDIS"]
        opened: list[object] = []
        state.events.subscribe(lambda event, opened=opened: opened.append(event)
                               if event.kind == "connect" else None)
        _route(app, ext)
        try:
            with serve(app) as port:
                load = drive(port, async_apps.PATH, THOUSAND, CONCURRENCY, keep_alive)
        finally:
            state.close()
        report.row(name, f"{len(opened)} opened ({load.rps:.0f} rps)", f"<= {POOL} (pool)",
                   len(opened) <= POOL and not load.failures)
        if load.failures:
            report.note(f"{len(load.failures)} requests failed, first: {load.failures[0]}")
    report.note("counted: the registration's connect events, from its first request on; "
                "HTTP connections kept alive except through WsgiToAsgi (a new one per "
                "request: asgiref fails the requests that follow on a kept-alive one), and "
                "under werkzeug's server (HTTP/1.0: it closes each)")


def _quart() -> Any:
    from quart import Quart

    return Quart("bench-quart")


@contextmanager
def _wsgi_to_asgi(app: Flask) -> Iterator[int]:
    from asgiref.wsgi import WsgiToAsgi

    with uvicorn_thread(WsgiToAsgi(app)) as port:  # type: ignore[no-untyped-call]
        yield port


def _route(app: Any, ext: CoreRedis) -> None:
    """The view every mode serves: one GET through ``ext.async_client``."""
    async def get() -> str:
        return await ext.async_client.get(async_apps.KEY) or ""

    app.get(async_apps.PATH)(get)
