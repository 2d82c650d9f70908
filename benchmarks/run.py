"""flask-core-redis benchmark: one run against one real redis-server that this
script starts on a free loopback port (and stops). Prints medians and ratios.

    bash scripts/bench            # or: PYTHONPATH=. python benchmarks/run.py
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from flask import Flask
from flask_caching import Cache
from flask_caching.backends.rediscache import RedisCache

from flask_core_redis import CoreRedis
from tests.servers import RedisProcess, free_port

ROUNDS = 7
rows: list[tuple[str, str, str]] = []


def mean_us(operation: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        operation()
    return (time.perf_counter() - started) / count * 1e6


def median_us(operation: Callable[[], object], count: int) -> float:
    """Median over ROUNDS of the mean time of one call, in microseconds."""
    return statistics.median(mean_us(operation, count) for _ in range(ROUNDS))


def report(name: str, value: str, note: str = "") -> None:
    rows.append((name, value, note))
    print(f"  {name:<58} {value:>14}  {note}", flush=True)


def compare(name: str, ours: Callable[[], object], theirs: Callable[[], object],
            count: int, target: str) -> None:
    """Time both in alternating rounds, so that drift in machine speed hits
    both alike; report the medians and the median of the per-round ratios."""
    pairs = [(mean_us(ours, count), mean_us(theirs, count)) for _ in range(ROUNDS)]
    ours_us = statistics.median(a for a, _ in pairs)
    theirs_us = statistics.median(b for _, b in pairs)
    ratio = statistics.median(a / b for a, b in pairs)
    report(name, f"{ours_us:.1f} us", f"vs {theirs_us:.1f} us = {ratio:.3f}x ({target})")


def bench_client(app: Flask, ext: CoreRedis, raw: redis.Redis) -> None:
    print("1. extension client vs raw redis-py", flush=True)
    with app.app_context():
        client = ext.client
        client.set("bench:k", "v")
        for label, command in (("GET", lambda c: c.get("bench:k")),
                               ("SET", lambda c: c.set("bench:k", "v"))):
            compare(f"{label}: ext.client vs redis.Redis",
                    lambda command=command: command(ext.client),
                    lambda command=command: command(raw), 3000, "target <= 1.03x")


def bench_cache(app: Flask, ext: CoreRedis, raw: redis.Redis, port: int) -> None:
    print("2. cache reads", flush=True)
    value = {"id": 7, "name": "Ann", "tags": ["a", "b", "c"], "score": 12.5}
    raw.set("bench:json", json.dumps(value))
    flask_caching = RedisCache(host="127.0.0.1", port=port, key_prefix="fc:")
    flask_caching.set("hit", value, timeout=600)
    with app.app_context():
        ext.cache.set("hit", value, ttl=600)
        ext.cache.set_many({f"m{n}": value for n in range(100)}, ttl=600)
        compare("ext.cache.get hit vs GET + json.loads", lambda: ext.cache.get("hit"),
                lambda: json.loads(raw.get("bench:json")), 2000, "target <= 1.15x")
        compare("ext.cache.get hit vs Flask-Caching RedisCache.get",
                lambda: ext.cache.get("hit"), lambda: flask_caching.get("hit"), 2000,
                "target <= 1.00x")
        keys = [f"m{n}" for n in range(100)]
        compare("get_many(100) vs 100 x get", lambda: ext.cache.get_many(keys),
                lambda: [ext.cache.get(key) for key in keys], 20, "lower is better")


def stampede(call: Callable[[], object]) -> float:
    start = threading.Barrier(50)

    def caller() -> None:
        start.wait()
        call()

    threads = [threading.Thread(target=caller) for _ in range(50)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def bench_stampede(app: Flask, ext: CoreRedis, port: int) -> None:
    print("3. stampede: 50 threads, cold key, 200 ms function", flush=True)
    runs = {"ours": 0, "flask-caching": 0}

    def slow(who: str) -> str:
        runs[who] += 1
        time.sleep(0.2)
        return "value"

    def ours() -> object:
        with app.app_context():
            return ext.cache.get_or_set(f"cold-{uuid.uuid4().hex[:0]}stampede",
                                        lambda: slow("ours"), ttl=60)

    wall = stampede(ours)
    report("ours: recomputations / wall time", f"{runs['ours']} / {wall:.2f} s")
    fc_app = Flask("flask-caching")
    cache = Cache(fc_app, config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_HOST": "127.0.0.1",
                                  "CACHE_REDIS_PORT": port, "CACHE_KEY_PREFIX": "fcm:"})

    @cache.memoize(60)
    def memoized() -> str:
        return slow("flask-caching")

    def theirs() -> object:
        with fc_app.app_context():
            return memoized()

    wall = stampede(theirs)
    report("Flask-Caching memoize: recomputations / wall time",
           f"{runs['flask-caching']} / {wall:.2f} s")


def bench_presence(app: Flask, ext: CoreRedis, raw: redis.Redis) -> None:
    print("4. presence", flush=True)
    users = [f"user-{n}" for n in range(100_000)]
    with app.app_context():
        presence = ext.presence
        filled = time.perf_counter()
        for user in users:
            presence.mark_online(user, 3600)
        report("mark_online x 100,000", f"{(time.perf_counter() - filled):.1f} s",
               f"{(time.perf_counter() - filled) / len(users) * 1e6:.0f} us each")
        pipe = raw.pipeline(transaction=False)
        for user in users[:10_000]:
            pipe.set(f"presence:user:{user}", "1", ex=3600)  # the original module's layout
        pipe.execute()
        sample = users[:10_000]
        ours = median_us(lambda: presence.online_many(sample), 1) / 1000
        seed = median_us(lambda: [raw.exists(f"presence:user:{u}") for u in sample], 1) / 1000
        report("online_many(10,000) vs 10,000 x EXISTS", f"{ours:.1f} ms",
               f"vs {seed:.1f} ms = {seed / ours:.0f}x faster (target >= 50x)")
        count = median_us(presence.online_count, 50)
        report("online_count() with 100,000 online", f"{count:.0f} us")
        scanned = median_us(lambda: sum(1 for _ in raw.scan_iter(
            match="presence:user:*", count=1000)), 1) / 1000
        report("counting 10,000 seed keys by SCAN instead", f"{scanned:.0f} ms",
               f"= {scanned * 1000 / count:.0f}x slower")
        tag = "{presence}"
        total = sum(raw.memory_usage(f"{tag}:{name}", samples=0) or 0
                    for name in ("online", "conns", "sweep"))
        report("Redis memory per online user (MEMORY USAGE)", f"{total / len(users):.0f} B",
               "target <= 200 B")


def bench_otp(app: Flask, ext: CoreRedis) -> None:
    print("5. OTP", flush=True)
    with app.app_context():
        otp = ext.otp
        phones = [f"+1555{n:07d}" for n in range(2000)]
        for phone in phones:
            otp.store_otp(phone, "123456")
        samples = []
        for phone in phones:
            started = time.perf_counter()
            assert otp.verify_otp(phone, "123456")
            samples.append((time.perf_counter() - started) * 1e6)
        report("verify_otp latency (one round trip)", f"{statistics.median(samples):.0f} us",
               f"p99 {statistics.quantiles(samples, n=100)[98]:.0f} us")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = RedisProcess(Path(folder), free_port()).start()
        try:
            port = server.port
            app = Flask("bench")
            app.config.update(SECRET_KEY="bench", REDIS_URL=f"redis://127.0.0.1:{port}",
                              REDIS_OTP_RESEND_COOLDOWN=0, REDIS_OTP_MAX_SENDS=10)
            ext = CoreRedis(app)
            raw = redis.Redis(port=port, decode_responses=True)
            with raw:
                version = raw.info("server")["redis_version"]
                print(f"redis-server {version}, redis-py {redis.__version__}, Python "
                      f"{sys.version.split()[0]}, {platform.machine()}, "
                      f"{platform.processor() or 'cpu ?'}", flush=True)
                bench_client(app, ext, raw)
                bench_cache(app, ext, raw, port)
                bench_stampede(app, ext, port)
                bench_presence(app, ext, raw)
                bench_otp(app, ext)
            with app.app_context():
                ext.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
