"""Async figures 1 and 4, on one server: a ``GET`` through ``ext.async_client``
against a raw ``redis.asyncio.Redis`` on the same loop, with the client homed
on the running loop (Quart's serving loop) and handed over to the
extension's loop thread (Flask's async views); an async cache hit
(``await ext.cache.aget``) against the sync one.

Each side runs ``CALLS`` calls per round, in alternating rounds
(:func:`benchmarks.measure.compare` with one batch per round, so that
starting the loop costs one call in ``CALLS``). Beside the wall time, each
batch records the CPU time this process spent on it (every thread: the
extension's loop thread too), which a busy machine disturbs far less: the
round trips the two sides share do not count in it."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio

from .cache import VALUE
from .measure import Comparison, Report, compare
from .topologies import Topology

KEY = "bench:async:get"
CALLS = 100  # per round
ROUNDS = 41  # short alternating rounds: drift in machine speed hits both alike


class Batch:
    """``CALLS`` calls of ``call``, awaited in ``loop`` (or plainly called
    without one), once per call of the batch; the CPU time of each run."""

    def __init__(self, call: Callable[[], Any], loop: asyncio.AbstractEventLoop | None = None
                 ) -> None:
        self._call, self._loop = call, loop
        self.cpu_us: list[float] = []

    def __call__(self) -> None:
        started = time.process_time()
        if self._loop is None:
            for _ in range(CALLS):
                self._call()
        else:
            self._loop.run_until_complete(self._awaited())
        self.cpu_us.append((time.process_time() - started) * 1e6 / CALLS)

    async def _awaited(self) -> None:
        call: Callable[[], Awaitable[Any]] = self._call
        for _ in range(CALLS):
            await call()


def compared(ours: Batch, theirs: Batch) -> tuple[Comparison, Comparison]:
    """Wall time and CPU time per call, each the medians and the median of
    the per-round ratios (the warm-up runs left out)."""
    wall = compare(ours, theirs, 1, ROUNDS)
    pairs = list(zip(ours.cpu_us[1:], theirs.cpu_us[1:], strict=True))
    cpu = Comparison(statistics.median(a for a, _ in pairs),
                     statistics.median(b for _, b in pairs),
                     statistics.median(a / b for a, b in pairs))
    return Comparison(wall.ours_us / CALLS, wall.theirs_us / CALLS, wall.ratio), cpu


def described(result: Comparison) -> str:
    return f"{result.ours_us:.0f} vs {result.theirs_us:.0f} us = {result.ratio:.3f}x"


@contextmanager
def event_loop(top: Topology, homed: bool) -> Iterator[asyncio.AbstractEventLoop]:
    """A new event loop; with ``homed``, the app's asyncio clients asked for
    from it live on it (as under Quart's ``before_serving``), closed at the end."""
    state = top.app.extensions["core_redis"]["REDIS"]
    loop = asyncio.new_event_loop()
    if homed:
        state.serve_on(loop)
    try:
        yield loop
    finally:
        if homed:
            loop.run_until_complete(state.stop_serving())
        loop.close()


# 1 -------------------------------------------------------------------------

def client(top: Topology, report: Report) -> None:
    report.section("async 1. GET: ext.async_client vs redis.asyncio.Redis, same loop")
    top.raw.set(KEY, "v")
    for homed, name, goal in ((True, "homed on the running loop (Quart)", "<= 1.05x"),
                              (False, "handed over from another loop (Flask)", "(info)")):
        with event_loop(top, homed) as loop:
            (wall, cpu), home = _get_against_raw(top, loop)
        report.row(f"GET {name}", described(wall), goal, wall.ratio <= 1.05 if homed else None)
        report.note(f"client CPU per call: {described(cpu)}; ext.async_client's home: {home}")
    report.note(f"wall time, {CALLS} awaited calls x {ROUNDS} alternating rounds, median of "
                "the per-round ratios; ext.async_client looked up on every call")


def _get_against_raw(top: Topology, loop: asyncio.AbstractEventLoop
                     ) -> tuple[tuple[Comparison, Comparison], str]:
    """GET through ``ext.async_client`` against a raw client made on ``loop``,
    and where the extension's client lives."""
    assert top.port is not None
    ext, raw = top.ext, redis.asyncio.Redis(port=top.port, decode_responses=True)
    try:
        return (compared(Batch(lambda: ext.async_client.get(KEY), loop),
                         Batch(lambda: raw.get(KEY), loop)),
                loop.run_until_complete(_home(top)))
    finally:
        loop.run_until_complete(raw.aclose())


async def _home(top: Topology) -> str:
    client = top.ext.async_client
    if client.home is asyncio.get_running_loop():
        return "the running loop"
    return "the extension's loop thread (each call handed over)"


# 4 -------------------------------------------------------------------------

def cache_hit(top: Topology, report: Report) -> None:
    report.section("async 4. cache hit: await ext.cache.aget vs ext.cache.get")
    cache = top.ext.cache
    cache.set("hit", VALUE, ttl=600)
    aget = getattr(cache, "aget", None)
    if aget is None:
        report.row("await ext.cache.aget vs ext.cache.get", "n/a (no ext.cache.aget yet)",
                   "(info)", "not measured")
        return
    with event_loop(top, homed=True) as loop:
        if loop.run_until_complete(aget("hit")) != VALUE:
            report.note("PRODUCT? await ext.cache.aget('hit') did not return the value set")
        wall, cpu = compared(Batch(lambda: aget("hit"), loop), Batch(lambda: cache.get("hit")))
    report.row("await ext.cache.aget vs ext.cache.get, hit", described(wall), "(info)")
    report.note(f"client CPU per call: {described(cpu)}; aget on a loop its client is homed "
                f"on (Quart's path); wall time, {CALLS} calls x {ROUNDS} alternating rounds, "
                "median of the per-round ratios")
