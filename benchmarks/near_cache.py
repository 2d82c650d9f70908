"""Near cache figures (``REDIS_CACHE_LOCAL_ENTRIES``), selected with
``--only near``: each runs its own apps with the near cache on, on the
topology's server(s), and closes them at the end.

1. a local hit (``ext.cache.get``) against ``GET`` + ``json.loads`` on the
   same server, and 2. against Flask-Caching's hit; the hit with a str value
   (shared) and with the dict (deserialized again) for information;
3. invalidation delivery: another OS process writes with ``ext.cache.set``,
   this one times the invalidation's arrival (``near.invalidated``) from the
   write's return, on the system-wide ``CLOCK_MONOTONIC`` both read;
4. hit ratio and throughput of a read/write mix over two apps, near cache on
   and off; 6. what tracking costs the server under that mix (INFO stats, the
   extra commands, the server time per operation);
5. memory per local entry (tracemalloc) against what the byte bound counts.

Every hit timed here is checked to have been served locally (``near.hits``),
and a few seconds of hits in a tight loop show whether local copies lapse.
"""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
from flask import Flask

from flask_core_redis import CoreRedis
from flask_core_redis.plugins.cache.near import ITEM_OVERHEAD_BYTES, NearCache

from .cache import VALUE
from .measure import Comparison, Report, compare, fmt_us, median_us
from .topologies import Topology

REPO = Path(__file__).absolute().parent.parent
CALLS = 200  # per round, as benchmarks/cache.py
ROUNDS = 21
GOAL, LIMIT = "<= 0.05x", 0.05
STR_VALUE = "Ann, id 7, tags a b c, score 12.5"
SUSTAINED_SECONDS = 3.0  # hits in a tight loop: do local copies lapse?
PROVEN_SECONDS = 5.0  # the first proof takes one PING answer (~ MAX_STALE / 3 at most)

DELIVERIES = 1000
DELIVERY_WAIT_SECONDS = 2.0

MIX_KEYS = 1000
MIX_WRITES = 0.10
MIX_ZIPF_S = 1.0
MIX_OPS = 200_000  # pregenerated, cycled
MIX_WARMUP_SECONDS = 0.5
MIX_SECONDS = 3.0

MEMORY_ENTRIES = 10_000

#: The commands the cache's reads and writes send (EVALSHA runs SET_MANY).
DATA_COMMANDS = ("mget", "evalsha")
#: What the tracking adds: once per connection, and a PING every MAX_STALE / 3.
TRACKING_COMMANDS = ("client|id", "client|tracking", "subscribe", "ping")


# Apps with the near cache on ------------------------------------------------

def app_config(url: str, entries: int) -> dict[str, Any]:
    return {"SECRET_KEY": "bench-secret-key-" + "x" * 32, "REDIS_URL": url,
            "REDIS_CACHE_LOCAL_ENTRIES": entries}


@dataclass
class NearApp:
    app: Flask
    ext: CoreRedis
    cache: Any  # the app's CachePlugin

    @property
    def near(self) -> NearCache:
        near = self.cache.near
        if near is None:
            raise RuntimeError("ext.cache.near is None: REDIS_CACHE_LOCAL_ENTRIES not applied")
        return near  # type: ignore[no-any-return]


@contextmanager
def near_app(top: Topology, name: str, entries: int = 100_000) -> Iterator[NearApp]:
    """An app of its own on the topology's server(s), near cache on (off
    with ``entries=0``), closed at the end."""
    app = Flask(f"bench-near-{name}")
    app.config.update(app_config(top.app.config["REDIS_URL"], entries))
    ext = CoreRedis(app)
    try:
        with app.app_context():
            cache = ext.cache
        yield NearApp(app, ext, cache)
    finally:
        with app.app_context():
            ext.close()


def wait_proven(near: NearCache) -> float:
    """Start the tracking and wait for its first proof; the seconds waited."""
    started = time.monotonic()
    while not near.proven():
        if time.monotonic() - started > PROVEN_SECONDS:
            raise RuntimeError(f"near cache not proven after {PROVEN_SECONDS:.0f} s: "
                               f"{near.stats()}")
        time.sleep(0.002)
    return time.monotonic() - started


def held_locally(one: NearApp, key: str, expected: Any) -> bool:
    """Read ``key`` until it is served from the local copy (the first read,
    a miss, keeps it); whether it then is, with the right value."""
    near = one.near
    for _ in range(3):
        before = near.hits
        value = one.cache.get(key)
        if near.hits == before + 1:
            return bool(value == expected)
    return False


def described(result: Comparison) -> str:
    return (f"{result.ours_us:.2f} vs {result.theirs_us:.1f} us = {result.ratio:.3f}x")


# 1-2 ------------------------------------------------------------------------

def hit(top: Topology, report: Report, rng: random.Random) -> None:
    report.section("near 1-2. near cache hit: ext.cache.get held locally vs GET + "
                   "json.loads and Flask-Caching")
    raw = top.raw
    raw.set("bench:near:json", json.dumps(VALUE))
    with near_app(top, "hit") as one:
        cache, near = one.cache, one.near
        cache.set("hit", VALUE, ttl=600)
        cache.set("hit-str", STR_VALUE, ttl=600)
        waited = wait_proven(near)
        if not (held_locally(one, "hit", VALUE) and held_locally(one, "hit-str", STR_VALUE)):
            report.row("near hit", f"not held locally: {near.stats()}", GOAL, "not measured")
            return
        before = near.hits

        def ours() -> object:
            return cache.get("hit")

        result = compare(ours, lambda: json.loads(raw.get("bench:near:json")), CALLS, ROUNDS)
        report.row("near hit vs GET + json.loads", described(result), GOAL,
                   result.ratio <= LIMIT)
        served = near.hits - before
        calls = CALLS * ROUNDS + 1
        if top.flask_caching is None:
            report.row("near hit vs Flask-Caching get", "n/a (no Flask-Caching backend)",
                       GOAL, "n/a")
        else:
            theirs = top.flask_caching()
            theirs.set("hit", VALUE, timeout=600)
            before = near.hits
            result = compare(ours, lambda: theirs.get("hit"), CALLS, ROUNDS)
            report.row("near hit vs Flask-Caching get", described(result), GOAL,
                       result.ratio <= LIMIT)
            served += near.hits - before
            calls += CALLS * ROUNDS + 1
            report.note(f"Flask-Caching backend: {type(theirs).__name__} on the same "
                        "server(s)")
        report.note(f"client wall time, {CALLS} calls x {ROUNDS} alternating rounds, median "
                    f"of the per-round ratios; ext.cache bound once (as figure 6); served "
                    f"locally: {served} of {calls} timed hits; first proof after "
                    f"{waited * 1000:.0f} ms")
        str_us = median_us(lambda: cache.get("hit-str"), 2000)
        dict_us = median_us(ours, 2000)
        report.row("near hit, str value (shared, not deserialized)", fmt_us(str_us), "(info)")
        report.row("near hit, dict VALUE (deserialized again)", fmt_us(dict_us), "(info)")
        with one.app.app_context():
            ext = one.ext
            lookup_us = median_us(lambda: ext.cache.get("hit"), 2000)
        report.row("near hit, ext.cache looked up on every call", fmt_us(lookup_us), "(info)")
        report.note(f"median of 9 rounds of 2000 calls; {near.stats()}")
        calls, served, lapses = sustained(one, "hit", SUSTAINED_SECONDS)
        report.row(f"near hit for {SUSTAINED_SECONDS:g} s: served locally",
                   f"{served / calls:.3%} of {calls:,} calls", "(info)")
        report.note(f"{calls - served} calls went to Redis, in {len(lapses)} lapses"
                    + (f" (starting {', '.join(f'{t:.2f}' for t in lapses[:6])} s in): the "
                       f"proof was older than MAX_STALE ({near.max_stale * 1000:.0f} ms)"
                       if lapses else ""))


def sustained(one: NearApp, key: str, seconds: float) -> tuple[int, int, list[float]]:
    """``cache.get(key)`` in a tight loop for ``seconds``: calls, calls served
    locally, and when (seconds in) each run of calls served by Redis began."""
    cache, near = one.cache, one.near
    calls = served = 0
    lapses: list[float] = []
    local = True
    started = time.monotonic()
    now = started
    while now - started < seconds:
        for _ in range(100):
            before = near.hits
            cache.get(key)
            hit = near.hits != before
            if local and not hit:
                lapses.append(time.monotonic() - started)
            local = hit
            served += hit
        calls += 100
        now = time.monotonic()
    return calls, served, lapses


# 3 --------------------------------------------------------------------------

def writer_main() -> None:
    """The other process of figure 3: one app on the URL given, near cache
    off; for each key read from stdin, ``ext.cache.set`` and print the
    monotonic times before and after it."""
    app = Flask("bench-near-writer")
    app.config.update(app_config(sys.argv[1], 0))
    ext = CoreRedis(app)
    with app.app_context():
        cache = ext.cache
        cache.set("writer-warm", VALUE, ttl=60)  # connected, script loaded
        print("ready", flush=True)
        for line in sys.stdin:
            key = line.strip()
            if not key:
                break
            started = time.monotonic()
            cache.set(key, VALUE, ttl=60)
            print(f"{started!r} {time.monotonic()!r}", flush=True)
        ext.close()


class Arrivals:
    """Wraps ``near.invalidated``: when each key's invalidation arrived, by
    the user key (the name after its last colon)."""

    def __init__(self, near: NearCache) -> None:
        self._sink = near.invalidated
        self._arrived: dict[str, float] = {}
        self._condition = threading.Condition()
        near.invalidated = self.invalidated  # type: ignore[method-assign]

    def invalidated(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._condition:
            for key in keys:
                self._arrived.setdefault(key.rpartition(":")[2], now)
            self._condition.notify_all()
        self._sink(keys)

    def wait(self, key: str, seconds: float) -> float | None:
        with self._condition:
            self._condition.wait_for(lambda: key in self._arrived, seconds)
            return self._arrived.get(key)


def quantiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def delivery(top: Topology, report: Report, rng: random.Random) -> None:
    report.section("near 3. invalidation delivery: ext.cache.set in another process to "
                   "its arrival here")
    url = top.app.config["REDIS_URL"]
    with near_app(top, "delivery") as one, tempfile.TemporaryFile("w+") as errors:
        near = one.near
        wait_proven(near)
        arrivals = Arrivals(near)
        writer = subprocess.Popen(
            [sys.executable, "-c", "from benchmarks.near_cache import writer_main; "
             "writer_main()", url], cwd=REPO, text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=errors,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        assert writer.stdin is not None and writer.stdout is not None
        try:
            if writer.stdout.readline().strip() != "ready":
                writer.wait(10)
                errors.seek(0)
                raise RuntimeError(f"the writer process failed: {errors.read()[-500:]}")
            from_return: list[float] = []
            from_start: list[float] = []
            lost = 0
            for n in range(DELIVERIES):
                key = f"deliver-{n}"
                writer.stdin.write(key + "\n")
                writer.stdin.flush()
                started, returned = map(float, writer.stdout.readline().split())
                arrived = arrivals.wait(key, DELIVERY_WAIT_SECONDS)
                if arrived is None:
                    lost += 1
                    continue
                from_return.append((arrived - returned) * 1e6)
                from_start.append((arrived - started) * 1e6)
        finally:
            writer.stdin.close()
            try:
                writer.wait(10)
            except subprocess.TimeoutExpired:
                writer.kill()
                writer.wait()
        p50, p99 = quantiles(from_return)
        report.row("near delivery from the write's return, p50 / p99",
                   f"{fmt_us(p50)} / {fmt_us(p99)}", "(info)")
        p50, p99 = quantiles(from_start)
        report.row("near delivery from the write's start, p50 / p99",
                   f"{fmt_us(p50)} / {fmt_us(p99)}", "(info)")
        write_p50, write_p99 = quantiles([a - b for a, b in zip(from_start, from_return,
                                                                strict=True)])
        early = sum(1 for sample in from_return if sample < 0)
        report.note(f"{len(from_return)} of {DELIVERIES} writes heard, {lost} not within "
                    f"{DELIVERY_WAIT_SECONDS:.0f} s; {early} arrived before the writer's "
                    f"ext.cache.set returned (negative); that set took {fmt_us(write_p50)} "
                    f"p50, {fmt_us(write_p99)} p99; writes one at a time; time.monotonic() "
                    "in both "
                    "processes (CLOCK_MONOTONIC, system-wide); the writer inherits this "
                    "process's CPU")


# 4 and 6 --------------------------------------------------------------------

def commandstats(masters: list[redis.Redis]) -> dict[str, tuple[int, int]]:
    """calls and usec by command, summed over the masters."""
    totals: dict[str, tuple[int, int]] = {}
    for master in masters:
        for key, value in cast(dict[str, Any], master.info("commandstats")).items():
            name = key.removeprefix("cmdstat_")
            calls, usec = totals.get(name, (0, 0))
            totals[name] = (calls + int(value["calls"]), usec + int(value["usec"]))
    return totals


def difference(after: dict[str, tuple[int, int]], before: dict[str, tuple[int, int]]
               ) -> dict[str, tuple[int, int]]:
    return {name: (calls - before.get(name, (0, 0))[0], usec - before.get(name, (0, 0))[1])
            for name, (calls, usec) in after.items()}


def mix_ops(rng: random.Random) -> list[tuple[int, bool, str]]:
    """(app 0 or 1, write?, key) for each operation: keys zipf-distributed."""
    weights = [1 / (rank + 1) ** MIX_ZIPF_S for rank in range(MIX_KEYS)]
    keys = rng.choices([f"mix{n}" for n in range(MIX_KEYS)], weights, k=MIX_OPS)
    return [(rng.randrange(2), rng.random() < MIX_WRITES, key) for key in keys]


@dataclass
class MixRun:
    ops: int
    reads: int
    found: int
    local: int
    seconds: float
    during: dict[str, tuple[int, int]]  # commandstats over the timed run
    setup: dict[str, tuple[int, int]]  # commandstats from the first read to the run
    tracking: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds

    def usec_per_op(self) -> float:
        return sum(self.during.get(name, (0, 0))[1] for name in DATA_COMMANDS) / self.ops

    def per_call(self, name: str) -> str:
        calls, usec = self.during.get(name, (0, 0))
        return f"{name} {calls / self.ops:.3f}/op at {usec / max(1, calls):.2f} us"


def run_ops(caches: list[Any], ops: list[tuple[int, bool, str]], start: int,
            seconds: float) -> tuple[int, int, int, float]:
    """Run ``ops`` from ``start`` on, cycling, for ``seconds``: how many,
    reads, reads that found a value, the time taken."""
    done = reads = found = 0
    index = start
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(256):
            which, write, key = ops[index]
            index = (index + 1) % len(ops)
            if write:
                caches[which].set(key, VALUE, ttl=600)
            else:
                reads += 1
                found += caches[which].get(key) is not None
        done += 256
        now = time.perf_counter()
        if now >= deadline:
            return done, reads, found, now - started


def run_mix(top: Topology, ops: list[tuple[int, bool, str]], near_on: bool) -> MixRun:
    entries = 100_000 if near_on else 0
    label = "on" if near_on else "off"
    with near_app(top, f"mix-a-{label}", entries) as a, \
            near_app(top, f"mix-b-{label}", entries) as b:
        caches = [a.cache, b.cache]
        a.cache.set_many({f"mix{n}": VALUE for n in range(MIX_KEYS)}, ttl=600)
        b.cache.set("mix-warm", VALUE, ttl=600)  # connected; a read would start tracking
        first = commandstats(top.masters)
        if near_on:
            for one in (a, b):
                wait_proven(one.near)
        run_ops(caches, ops, 0, MIX_WARMUP_SECONDS)
        warm = commandstats(top.masters)
        local = [one.near.hits for one in (a, b)] if near_on else [0, 0]
        done, reads, found, seconds = run_ops(caches, ops, 50_000, MIX_SECONDS)
        end = commandstats(top.masters)
        if near_on:
            local = [one.near.hits - before for one, before in zip((a, b), local, strict=True)]
        stats: dict[str, Any] = {}
        for section in ("clients", "stats"):  # tracking_clients is under clients on 7.0
            stats.update(cast(dict[str, Any], top.masters[0].info(section)))
        tracking = {name: int(stats.get(name, -1)) for name in
                    ("tracking_clients", "tracking_total_prefixes", "tracking_total_keys")}
        return MixRun(done, reads, found, sum(local), seconds, difference(end, warm),
                      difference(warm, first), tracking)


def mix(top: Topology, report: Report, rng: random.Random) -> None:
    report.section(f"near 4. read/write mix: {1 - MIX_WRITES:.0%} get / {MIX_WRITES:.0%} "
                   f"set, {MIX_KEYS} keys (zipf s={MIX_ZIPF_S:g}), two apps, one thread")
    ops = mix_ops(rng)
    off = run_mix(top, ops, near_on=False)
    on = run_mix(top, ops, near_on=True)
    report.row("near mix throughput, on vs off",
               f"{on.per_second:,.0f} vs {off.per_second:,.0f} ops/s = "
               f"{on.per_second / off.per_second:.2f}x", "(info)")
    report.row("near mix hits served locally, on / off",
               f"{on.local / on.reads:.1%} / {off.local / off.reads:.1%} of reads", "(info)")
    report.row("near mix cache hit ratio, on / off",
               f"{on.found / on.reads:.1%} / {off.found / off.reads:.1%}", "(info)")
    report.note(f"each {MIX_SECONDS:g} s after {MIX_WARMUP_SECONDS:g} s of warm-up, the same "
                f"pregenerated operations; each op on app A or B at random (a set on one "
                f"invalidates the other's copy); on: {on.ops} ops, {on.reads} reads; off: "
                f"{off.ops} ops")
    report.section("near 6. server cost of tracking under that mix")
    report.row("near INFO stats tracking_clients / prefixes / keys",
               " / ".join(str(on.tracking[name]) for name in
                          ("tracking_clients", "tracking_total_prefixes",
                           "tracking_total_keys")), "(info)")
    report.note("off: " + " / ".join(str(off.tracking[name]) for name in
                                     ("tracking_clients", "tracking_total_prefixes",
                                      "tracking_total_keys")) + "; read at the end of the run")
    setup = " / ".join(str(on.setup.get(name, (0, 0))[0]) for name in TRACKING_COMMANDS)
    pings = on.during.get("ping", (0, 0))[0] - off.during.get("ping", (0, 0))[0]
    report.row("near tracking start: " + " / ".join(TRACKING_COMMANDS), setup, "(info)")
    report.row("near PINGs over the run, on minus off",
               f"{pings} in {on.seconds:.1f} s = {pings / on.seconds:.1f}/s "
               f"({pings / on.ops:.5f}/op)", "(info)")
    report.row("near server usec per op (mget + evalsha), on vs off",
               f"{on.usec_per_op():.2f} vs {off.usec_per_op():.2f} us = "
               f"{on.usec_per_op() / off.usec_per_op():.2f}x", "(info)")
    for name in DATA_COMMANDS:
        report.note(f"on: {on.per_call(name)}; off: {off.per_call(name)}")
    report.note("INFO commandstats differences (no CONFIG RESETSTAT): tracking start from "
                "the first read to the end of the warm-up (both apps), the rest over the "
                "timed run")


# 5 --------------------------------------------------------------------------

def memory(top: Topology, report: Report, rng: random.Random) -> None:
    report.section(f"near 5. memory per local entry: {MEMORY_ENTRIES} entries of VALUE")
    keys = [f"mem{n:05d}" for n in range(MEMORY_ENTRIES)]
    with near_app(top, "memory", MEMORY_ENTRIES + 10) as one:
        cache, near = one.cache, one.near
        for start in range(0, MEMORY_ENTRIES, 500):
            cache.set_many({key: VALUE for key in keys[start:start + 500]}, ttl=600)
        wait_proven(near)
        cache.get_many(["warm-up"])  # connection made, the version held
        gc.collect()
        tracemalloc.start()
        try:
            base, first = tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()
            for start in range(0, MEMORY_ENTRIES, 100):
                cache.get_many(keys[start:start + 100])
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - base
            sites = tracemalloc.take_snapshot().compare_to(first, "lineno")
        finally:
            tracemalloc.stop()
        count = len(near.entries)
        if count < MEMORY_ENTRIES:
            report.row("near memory per local entry", f"only {count} held: {near.stats()}",
                       "(info)", "not measured")
            return
        counted = near.entries.bytes / count
        objects = counted - ITEM_OVERHEAD_BYTES
        report.row("near memory per local entry (tracemalloc)",
                   f"{held / count:.0f} B = {held / count - objects:.0f} B overhead "
                   f"+ {objects:.0f} key and value objects", "(info)")
        report.row("near bytes counted per entry (the byte bound)",
                   f"{counted:.0f} B = {ITEM_OVERHEAD_BYTES} B (ITEM_OVERHEAD_BYTES) + "
                   f"{objects:.0f} key and value objects (sys.getsizeof)", "(info)")
        report.note(f"{count} entries held (the namespace version among them), "
                    f"{held:,} B traced while filling them, garbage collected; the value "
                    f"serializes to {len(cache.serializer().dumps(VALUE))} B and is held "
                    "serialized (a dict)")
        per_site = [(site.size_diff / count, site.traceback[0]) for site in sites[:8]
                    if site.size_diff / count >= 4]
        report.note("per entry by allocation site: " + ", ".join(
            f"{Path(frame.filename).name}:{frame.lineno} {size:.0f} B"
            for size, frame in per_site))
