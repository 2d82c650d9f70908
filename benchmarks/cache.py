"""Cache figures 6-7, and the standalone-only sections kept from the first
benchmark: ext.client vs raw redis-py, get_many, stampede, OTP verify."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable

import redis
from flask import Flask
from flask_caching import Cache

from .measure import Comparison, Report, compare, fmt_us, time_op
from .topologies import Topology

VALUE = {"id": 7, "name": "Ann", "tags": ["a", "b", "c"], "score": 12.5}
CALLS = 200  # per round; a round trip costs ~0.2-0.6 ms here
ROUNDS = 21  # short alternating rounds: drift in machine speed hits both alike
MISS = object()


def compared(report: Report, name: str, result: Comparison, goal: str, limit: float) -> None:
    report.row(name, f"{result.ours_us:.0f} vs {result.theirs_us:.0f} us = {result.ratio:.3f}x",
               goal, result.ratio <= limit)


# 6 -------------------------------------------------------------------------

def reads(top: Topology, report: Report) -> None:
    report.section("6. cache hit: ext.cache.get vs GET + json.loads and Flask-Caching")
    cache, raw = top.ext.cache, top.raw
    raw.set("bench:json", json.dumps(VALUE))
    cache.set("hit", VALUE, ttl=600)
    if cache.get("hit") != VALUE:
        report.note("PRODUCT? ext.cache.get('hit') did not return the value just set")
    compared(report, "ext.cache.get hit vs GET + json.loads",
             compare(lambda: cache.get("hit"), lambda: json.loads(raw.get("bench:json")),
                     CALLS, ROUNDS), "<= 1.10x", 1.10)
    if top.flask_caching is None:
        report.row("ext.cache.get hit vs Flask-Caching get", "n/a (no Flask-Caching backend)",
                   "<= 1.00x", "n/a")
    else:
        theirs = top.flask_caching()
        theirs.set("hit", VALUE, timeout=600)
        compared(report, "ext.cache.get hit vs Flask-Caching get",
                 compare(lambda: cache.get("hit"), lambda: theirs.get("hit"), CALLS, ROUNDS),
                 "<= 1.00x", 1.00)
        report.note(f"Flask-Caching backend: {type(theirs).__name__} on the same server(s)")
    report.note(f"client wall time, {CALLS} calls x {ROUNDS} alternating rounds, median of "
                "the per-round ratios")
    if top.clock is not None:
        hit = top.clock.measure(lambda: cache.get("hit"), CALLS, {"mget"})
        get = top.clock.measure(lambda: raw.get("bench:json"), CALLS, {"get"})
        report.row("cache hit server time vs GET",
                   f"{fmt_us(hit.per_op_us)} = {hit.per_op_us / get.per_op_us:.2f}x GET "
                   f"({fmt_us(get.per_op_us)})", "(info)")
        report.note(f"hit: {hit.describe()}")
        report.note(f"GET: {get.describe()}")


# 7 -------------------------------------------------------------------------

def invalidation(top: Topology, report: Report) -> None:
    report.section("7. invalidate_namespace")
    cache, namespace = top.ext.cache, "bench-ns"
    cache.set("entry", VALUE, ttl=600, namespace=namespace)
    server, wall = time_op(top.clock, lambda: cache.invalidate_namespace(namespace), 200,
                           {"incr"})
    if server is None:
        report.row("invalidate_namespace server time", f"n/a (wall {fmt_us(wall)})",
                   "one INCR", "n/a")
        report.note("no server: commandstats cannot be read from fakeredis")
    else:
        one_incr = (server.counted == {"incr"} and server.seen == ["incr"]
                    and server.calls["incr"] == server.ops and not server.warning)
        incrs = server.calls.get("incr", 0) / server.ops
        report.row("invalidate_namespace server time",
                   f"{fmt_us(server.per_op_us)} [incr x{incrs:.2f}]", "one INCR", one_incr)
        report.note(f"invalidate_namespace: {server.describe()}")
    cache.set("entry", VALUE, ttl=600, namespace=namespace)
    before = cache.get("entry", MISS, namespace=namespace)
    cache.invalidate_namespace(namespace)
    after = cache.get("entry", MISS, namespace=namespace)
    hit_then_miss = before == VALUE and after is MISS
    report.row("old entry after invalidate_namespace",
               f"{'hit' if before == VALUE else 'MISS'} before, "
               f"{'miss' if after is MISS else 'HIT'} after", "miss", hit_then_miss)


# Standalone extras ---------------------------------------------------------

def client(top: Topology, report: Report) -> None:
    report.section("ext.client vs raw redis-py")
    ext = top.ext
    assert top.port is not None
    raw = redis.Redis(port=top.port)  # bytes, as ext.client by default
    with raw:
        ext.client.set("bench:k", "v")
        for label, command in (("GET", lambda c: c.get("bench:k")),
                               ("SET", lambda c: c.set("bench:k", "v"))):
            compared(report, f"{label}: ext.client vs redis.Redis",
                     compare(lambda command=command: command(ext.client),
                             lambda command=command: command(raw), CALLS, ROUNDS),
                     "<= 1.03x", 1.03)
    cache = ext.cache
    cache.set_many({f"m{n}": VALUE for n in range(100)}, ttl=600)
    keys = [f"m{n}" for n in range(100)]
    result = compare(lambda: cache.get_many(keys), lambda: [cache.get(key) for key in keys], 5)
    report.row("cache.get_many(100) vs 100 x get",
               f"{fmt_us(result.ours_us)} vs {fmt_us(result.theirs_us)} = {result.ratio:.3f}x",
               "(info)")


def _stampede(call: Callable[[], object], callers: int = 50) -> float:
    start = threading.Barrier(callers)

    def caller() -> None:
        start.wait()
        call()

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return time.perf_counter() - started


def stampede(top: Topology, report: Report) -> None:
    report.section("stampede: 50 threads, cold key, 200 ms function")
    runs = {"ours": 0, "flask-caching": 0}
    lock = threading.Lock()

    def slow(who: str) -> str:
        with lock:
            runs[who] += 1
        time.sleep(0.2)
        return "value"

    def ours() -> object:
        with top.app.app_context():
            return top.ext.cache.get_or_set("stampede", lambda: slow("ours"), ttl=60)

    wall = _stampede(ours)
    report.row("ours: recomputations / wall time", f"{runs['ours']} / {wall:.2f} s",
               "1 recomputation", runs["ours"] == 1)
    fc_app = Flask("flask-caching")
    cache = Cache(fc_app, config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_HOST": "127.0.0.1",
                                  "CACHE_REDIS_PORT": top.port, "CACHE_KEY_PREFIX": "fcm:"})

    @cache.memoize(60)
    def memoized() -> str:
        return slow("flask-caching")

    def theirs() -> object:
        with fc_app.app_context():
            return memoized()

    wall = _stampede(theirs)
    report.row("Flask-Caching memoize: recomputations / wall time",
               f"{runs['flask-caching']} / {wall:.2f} s", "(info)")


def otp(top: Topology, report: Report) -> None:
    report.section("OTP")
    otp = top.ext.otp
    phones = [f"+1555{n:07d}" for n in range(1000)]
    for phone in phones:
        otp.store_otp(phone, "123456")
    samples = []
    for phone in phones:
        started = time.perf_counter()
        verified = otp.verify_otp(phone, "123456")
        samples.append((time.perf_counter() - started) * 1e6)
        if not verified:
            raise AssertionError(f"verify_otp refused the code just stored for {phone}")
    report.row("verify_otp latency (one round trip)", f"{statistics.median(samples):.0f} us "
               f"(p99 {statistics.quantiles(samples, n=100)[98]:.0f} us)", "(info)")
