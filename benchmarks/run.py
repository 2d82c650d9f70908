"""flask-core-redis benchmark: one run over three topologies (memory://,
one redis-server, a 3+3 Cluster), the servers started on free loopback ports
by this script and stopped by it; the async figures (benchmarks/async_*.py)
on the one server. Every figure is printed next to its goal,
with "met" or "MISSED", and a summary lists every MISSED goal.

    bash scripts/bench            # or: PYTHONPATH=. .venv/bin/python benchmarks/run.py
    bash scripts/bench --only async   # the figures whose name starts with "async"
    bash scripts/bench --only near    # the near cache's (benchmarks/near_cache.py)
    bash scripts/bench --only telemetry   # REDIS_OTEL's cost (benchmarks/telemetry.py)

Server time per operation comes from INFO commandstats (see benchmarks/measure.py):
CONFIG RESETSTAT on every master, the operations, then the usec of the
top-level commands the operation sends (EVALSHA, not the commands its script
runs; MULTI+EXEC, not the queued commands), summed over the masters, divided
by the number of operations. The set counted is printed next to each figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType

import redis

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).absolute().parent.parent))

from benchmarks import async_client, async_serving, cache, near_cache, presence, telemetry
from benchmarks.measure import Report
from benchmarks.topologies import (
    Topology,
    cluster_topology,
    describe_masters,
    memory_topology,
    pin_client,
    server_version,
    standalone_topology,
)

Figure = Callable[[Topology, Report, random.Random], None]


def plan(name: str) -> list[tuple[str, Figure]]:
    """The figures each topology runs, in order."""
    memory: dict[str, list[presence.MemoryFill]] = {"default": []}

    def count(top: Topology, report: Report, rng: random.Random) -> None:
        memory["default"] = presence.online_count(top, report)

    figures: list[tuple[str, Figure]] = []
    if name != "memory":  # figures 1 and 2 are about servers
        figures += [("presence writes", presence.writes),
                    ("online_many", lambda top, report, rng: presence.online_many(top, report))]
    figures.append(("online_count", count))
    if name == "standalone":
        figures.append(("memory per user", lambda top, report, rng: presence.memory(
            top, report, memory["default"], rng)))
    if name == "cluster":
        figures.append(("spread over masters", presence.spread))
    if name != "memory":
        figures.append(("cache reads", lambda top, report, rng: cache.reads(top, report)))
    figures.append(("invalidate_namespace",
                    lambda top, report, rng: cache.invalidation(top, report)))
    if name == "standalone":
        figures += [("ext.client", lambda top, report, rng: cache.client(top, report)),
                    ("stampede", lambda top, report, rng: cache.stampede(top, report)),
                    ("OTP", lambda top, report, rng: cache.otp(top, report)),
                    ("async client", lambda top, report, rng: async_client.client(top, report)),
                    ("async requests/s", lambda top, report, rng:
                        async_serving.requests_per_second(top, report)),
                    ("async connections", lambda top, report, rng:
                        async_serving.connections(top, report)),
                    ("async cache hit",
                     lambda top, report, rng: async_client.cache_hit(top, report)),
                    ("near hit", near_cache.hit),
                    ("near invalidation delivery", near_cache.delivery),
                    ("near mix", near_cache.mix),
                    ("near memory", near_cache.memory),
                    ("telemetry", telemetry.overhead)]
    if name == "cluster":
        figures += [("near hit", near_cache.hit),
                    ("telemetry", telemetry.overhead)]
    return figures


TOPOLOGIES: list[tuple[str, str, Callable[[Path], AbstractContextManager[Topology]]]] = [
    ("memory", 'REDIS_URL="memory://", fakeredis in this process; no server time',
     lambda folder: memory_topology()),
    ("standalone", "one redis-server", standalone_topology),
    ("cluster", "3 masters + 3 replicas", cluster_topology),
]


def header(pinning: str) -> None:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{server_version()}, redis-py {redis.__version__}, Python "
          f"{sys.version.split()[0]}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load}", flush=True)
    print(f"CPU pinning: {pinning}", flush=True)
    print("Presence app: REDIS_PRESENCE_MAX_CONNECTIONS=2000, REDIS_PRESENCE_SHARDS "
          "default (16)", flush=True)


def run_topology(report: Report, name: str, description: str,
                 start: Callable[[Path], AbstractContextManager[Topology]],
                 folder: Path, only: str) -> None:
    figures = [(what, figure) for what, figure in plan(name) if what.startswith(only)]
    if not figures:
        return
    started = time.monotonic()
    with report.guard(f"{name}: deployment"), start(folder / name) as top:
        report.heading(name, f"{description}; masters: {describe_masters(top)}")
        rng = random.Random(7)
        for what, figure in figures:
            with report.guard(what), top.app.app_context():
                figure(top, report, rng)
    print(f"  ({name} took {time.monotonic() - started:.0f} s)", flush=True)


def summary(report: Report, seconds: float) -> None:
    missed = report.with_status("MISSED")
    unmeasured = report.with_status("not measured")
    goals = sum(1 for row in report.rows if row.status in ("met", "MISSED"))
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\n=== summary: {goals - len(missed)} of {goals} goals met, "
          f"{len(missed)} MISSED, {len(unmeasured)} not measured; run took {seconds:.0f} s, "
          f"load average at the end {load}", flush=True)
    for row in missed + unmeasured:
        print(f"  {row.status.upper() if row.status == 'MISSED' else row.status}  "
              f"{row.topology}: {row.name}: {row.value} (goal {row.goal})", flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every finally


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", default="", metavar="PREFIX",
                        help="run only the figures whose name starts with PREFIX "
                             "(async, say)")
    only = parser.parse_args().only
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    header(pin_client().description)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        for name, description, start in TOPOLOGIES:
            run_topology(report, name, description, start, Path(folder), only)
    summary(report, time.monotonic() - started)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupt:
        print(f"\ninterrupted ({interrupt or 'Ctrl-C'}); every server started was stopped",
              file=sys.stderr)
        sys.exit(130)
