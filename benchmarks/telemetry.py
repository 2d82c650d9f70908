"""Telemetry figures (``REDIS_OTEL``), selected with ``--only telemetry``:
what recording costs a read, and what the telemetry work costs a read with
it off. Each side runs in a fresh interpreter of its own (a worker,
:func:`worker_main`): once a registration turns telemetry on, redis-py's
metrics stay on for every client of the process, and OpenTelemetry's global
providers can be set only once per process.

The sides, each with its apps on the topology's server(s):

- ``off``: ``REDIS_OTEL=False``, no OpenTelemetry provider set;
- ``on``: an SDK ``MeterProvider`` with an ``InMemoryMetricReader`` set with
  ``metrics.set_meter_provider`` before the apps are built, ``REDIS_OTEL=True``;
- ``spans``: ``on``, and a ``TracerProvider`` whose ``SimpleSpanProcessor``
  hands every span to an ``InMemorySpanExporter``;
- ``before``: the package as it was before the telemetry work (commit
  :data:`BEFORE`, taken out of git with ``git archive`` into a temporary
  folder put first on ``PYTHONPATH``; the worker checks that every
  ``flask_core_redis`` module it imported came from there);
- ``off2``: a second ``off`` process, for information: what two processes
  of the same code differ by on this machine, the resolution of the figures.

The operations: ``ext.client.get`` of an existing key, a cache hit
``ext.cache.get`` (near cache off), and, on every side but ``before``, a
near cache hit (``REDIS_CACHE_LOCAL_ENTRIES=1000``, checked to be served
locally). Every worker starts at once, builds its apps and waits; then, for
each round and operation, each side in turn times one stretch of calls (the
order of the sides reversed every other round), the others idle. A side's
figure is the median of its stretches' elapsed time per call, so drift in
machine speed hits every side alike; each row's note gives the CPU time of
the calling thread too (``time.thread_time``: the wait for Redis left out),
and the median and middle half of the per-round ratios. On Cluster only
``on`` and ``off`` run, in fewer rounds.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from flask import Flask

from flask_core_redis import CoreRedis

from .cache import VALUE
from .measure import Report
from .near_cache import NearApp, app_config, held_locally, wait_proven

if TYPE_CHECKING:
    import random

    from .topologies import Topology

REPO = Path(__file__).absolute().parent.parent
#: The commit before the telemetry work.
BEFORE = "e2d0a3d"
ROUNDS = 200
CLUSTER_ROUNDS = 60
#: Calls per stretch of each operation: short stretches, many rounds, so
#: that drift in machine speed hits the sides alike.
CALLS = {"client": 50, "cache": 50, "near": 1000}
WARMUP_CALLS = 50
LABELS = {"client": "ext.client.get", "cache": "ext.cache.get hit",
          "near": "near cache hit"}
#: The operations each side's worker times (``off2``: a second ``off``).
SIDES = {"off": ("client", "cache", "near"), "on": ("client", "cache", "near"),
         "spans": ("client", "cache", "near"), "off2": ("client", "cache", "near"),
         "before": ("client", "cache")}
CLUSTER_SIDES = ("off", "on")
CLIENT_KEY = "bench:telemetry"
CACHE_KEY = "telemetry-hit"


# The worker -----------------------------------------------------------------

def worker_main() -> None:
    """One side's worker. ``sys.argv[1]`` is a JSON object naming the URL,
    the side, the source root every ``flask_core_redis`` module must come
    from, and the operations. Prints ``ready`` once its apps are built, then,
    for each line ``<operation> <calls>`` read from stdin, the :class:`Timing`
    of one stretch of that many calls; at the end of stdin, one JSON line
    saying where ``flask_core_redis`` came from and what OpenTelemetry
    recorded."""
    spec = json.loads(sys.argv[1])
    side, root = spec["side"], Path(spec["root"])
    check_imported(root, has_telemetry=side != "before")
    recorded = install_providers(side)
    with ExitStack() as stack:
        shared = stack.enter_context(built_app(spec["url"], side, 0))
        near = (stack.enter_context(built_app(spec["url"], side, 1000))
                if "near" in spec["operations"] else shared)
        stretches = {name: prepare(name, near if name == "near" else shared)
                     for name in spec["operations"]}
        print("ready", flush=True)
        for line in sys.stdin:
            name, calls = line.split()
            print(json.dumps(stretches[name](int(calls))), flush=True)
    check_imported(root, has_telemetry=side != "before")
    import flask_core_redis

    print(json.dumps({"imported": flask_core_redis.__file__, "recorded": recorded()}),
          flush=True)


def check_imported(root: Path, has_telemetry: bool) -> None:
    """Fail unless every ``flask_core_redis`` module imported so far came
    from ``root`` (an editable install's finder would find a module that the
    old tree lacks in the checkout), and its tree has the telemetry package
    or lacks it as the side expects."""
    import flask_core_redis

    root = root.resolve()
    outside = sorted(name for name, module in list(sys.modules.items())
                     if name.partition(".")[0] == "flask_core_redis"
                     and not Path(getattr(module, "__file__", None) or root).resolve()
                     .is_relative_to(root))
    if outside:
        raise RuntimeError(f"{len(outside)} modules imported from outside {root}: "
                           f"{', '.join(outside[:5])} ...")
    package = Path(flask_core_redis.__file__ or "").parent
    if (package / "telemetry").is_dir() != has_telemetry:
        raise RuntimeError(f"{package} {'lacks' if has_telemetry else 'has'} telemetry/")


def install_providers(side: str) -> Callable[[], dict[str, Any]]:
    """Set the side's global OpenTelemetry providers; a function saying what
    they recorded (metric names, span count)."""
    if side not in ("on", "spans"):
        return dict
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    exporter = InMemorySpanExporter()
    if side == "spans":
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)

    def recorded() -> dict[str, Any]:
        data = reader.get_metrics_data()
        names = sorted({metric.name for resource in (data.resource_metrics if data else [])
                        for scope in resource.scope_metrics for metric in scope.metrics})
        return {"metrics": names, "spans": len(exporter.get_finished_spans())}

    return recorded


@contextmanager
def built_app(url: str, side: str, local_entries: int) -> Iterator[NearApp]:
    """An app on ``url`` with telemetry as ``side`` has it (``before``: the
    key left out, the old code has none), the near cache on with
    ``local_entries``; closed at the end."""
    app = Flask(f"bench-telemetry-{side}")
    app.config.update(app_config(url, local_entries))
    if side != "before":
        app.config["REDIS_OTEL"] = side in ("on", "spans")
    ext = CoreRedis(app)
    try:
        with app.app_context():
            one = NearApp(app, ext, ext.cache)
        yield one
    finally:
        with app.app_context():
            ext.close()


class Timing(NamedTuple):
    """Microseconds per call: elapsed, and CPU time of the calling thread
    (what the process itself spends, the wait for Redis left out)."""

    wall: float
    cpu: float


def prepare(name: str, one: NearApp) -> Callable[[int], Timing]:
    """Operation ``name`` as a timed stretch in ``one``'s app context, its
    key written, the value read back checked (a near cache hit: served
    locally) and the operation warmed up."""
    with one.app.app_context():
        operation = checked_operation(name, one)
        for _ in range(WARMUP_CALLS):
            operation()

    def stretch(calls: int) -> Timing:
        with one.app.app_context():
            return timed_stretch(operation, calls)

    return stretch


def timed_stretch(operation: Callable[[], object], calls: int) -> Timing:
    """Wall and CPU microseconds per call of ``calls`` calls of ``operation``."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        operation()
    return Timing((time.perf_counter() - wall) / calls * 1e6,
                  (time.thread_time() - cpu) / calls * 1e6)


def checked_operation(name: str, one: NearApp) -> Callable[[], object]:
    ext = one.ext
    if name == "client":
        ext.client.set(CLIENT_KEY, "v")
        if ext.client.get(CLIENT_KEY) != "v":
            raise RuntimeError("ext.client.get did not read the value just set")
        return lambda: ext.client.get(CLIENT_KEY)
    ext.cache.set(CACHE_KEY, VALUE, ttl=600)
    if name == "near":
        wait_proven(one.near)
        if not held_locally(one, CACHE_KEY, VALUE):
            raise RuntimeError(f"the near cache does not serve the hit: {one.near.stats()}")
    elif ext.cache.get(CACHE_KEY) != VALUE:
        raise RuntimeError("ext.cache.get did not return the value just set")
    return lambda: ext.cache.get(CACHE_KEY)


# The driver -----------------------------------------------------------------

class Worker:
    """One side's worker process, driven a stretch at a time."""

    def __init__(self, side: str, root: Path, pythonpath: str, url: str, cwd: Path,
                 errors: IO[str]) -> None:
        self.side = side
        self.errors = errors
        spec = {"url": url, "side": side, "root": str(root), "operations": list(SIDES[side])}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from benchmarks.telemetry import worker_main; "
             "worker_main()", json.dumps(spec)], cwd=cwd, text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=errors, env={**os.environ, "PYTHONPATH": pythonpath})

    def ready(self) -> None:
        self._answer()  # "ready"

    def stretch(self, operation: str) -> Timing:
        """The time per call of one stretch of ``operation``."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{operation} {CALLS[operation]}\n")
        self.process.stdin.flush()
        return Timing(*json.loads(self._answer()))

    def finish(self) -> dict[str, Any]:
        """Where ``flask_core_redis`` came from and what was recorded."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return json.loads(self._answer())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _answer(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(10)
            self.errors.seek(0)
            last = (self.errors.read().strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the {self.side} worker failed: {last}")
        return line.strip()


@contextmanager
def started_workers(url: str, sides: tuple[str, ...]
                    ) -> Iterator[tuple[dict[str, Worker], str]]:
    """A ready worker of each of ``sides``, run in an empty folder (no
    ``.env``, nothing importable), stopped at the end; and why ``before`` is
    missing, if it is."""
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as folder, ExitStack() as stack:
        cwd = Path(folder) / "run"
        cwd.mkdir()
        roots = {side: (REPO, str(REPO)) for side in sides if side != "before"}
        missing = ""
        if "before" in sides:
            try:
                old = extract_before(Path(folder) / "before")
                roots["before"] = (old, os.pathsep.join((str(old), str(REPO))))
            except (OSError, subprocess.CalledProcessError) as error:
                missing = getattr(error, "stderr", b"").decode(errors="replace").strip() \
                    or str(error)
        workers = {}
        for side, (root, pythonpath) in roots.items():
            errors = stack.enter_context(tempfile.TemporaryFile("w+"))
            workers[side] = Worker(side, root, pythonpath, url, cwd, errors)
            stack.callback(workers[side].stop)
        for worker in workers.values():
            worker.ready()
        yield workers, missing


def extract_before(folder: Path) -> Path:
    """``flask_core_redis`` of commit :data:`BEFORE`, out of this checkout's
    git history into ``folder``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", BEFORE,
                              "flask_core_redis"], capture_output=True, check=True,
                             timeout=60).stdout
    folder.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


#: The time per call of each stretch, by side and operation.
Stretches = dict[str, dict[str, list[Timing]]]


def run_rounds(workers: dict[str, Worker], rounds: int) -> Stretches:
    """``rounds`` rounds: in each, every operation, a stretch by each side
    that times it, the order of the sides reversed every other round."""
    sides = list(workers)
    timed: Stretches = {side: {name: [] for name in SIDES[side]} for side in sides}
    for number in range(rounds):
        for operation in LABELS:
            for side in sides if number % 2 == 0 else reversed(sides):
                if operation in timed[side]:
                    timed[side][operation].append(workers[side].stretch(operation))
    return timed


# The figures ----------------------------------------------------------------

def overhead(top: Topology, report: Report, rng: random.Random) -> None:
    """REDIS_OTEL on vs off, and off vs the package before the telemetry work
    (on Cluster: on vs off only, in fewer rounds)."""
    cluster = top.name == "cluster"
    sides, rounds = (CLUSTER_SIDES, CLUSTER_ROUNDS) if cluster else (tuple(SIDES), ROUNDS)
    report.section("telemetry 1-2. per-op time, one process per side: REDIS_OTEL on vs off"
                   + ("" if cluster else f", off vs before ({BEFORE})"))
    with started_workers(top.app.config["REDIS_URL"], sides) as (workers, missing):
        timed = run_rounds(workers, rounds)
        finished = {side: worker.finish() for side, worker in workers.items()}
    for operation in ("client", "cache"):
        compared(report, timed, "on", "off", operation, 1.10)
    if not cluster:
        informative(report, timed)
        before(report, timed, finished, missing)
    describe(report, finished, rounds)


def informative(report: Report, timed: Stretches) -> None:
    """The rows without a goal: spans recorded too, the near cache hit, and
    two processes of the same side (what the method can resolve here)."""
    for operation in ("client", "cache"):
        compared(report, timed, "spans", "off", operation, None)
    compared(report, timed, "on", "off", "near", None)
    for operation in LABELS:
        compared(report, timed, "off2", "off", operation, None)


def before(report: Report, timed: Stretches, finished: dict[str, dict[str, Any]],
           missing: str) -> None:
    if "before" not in timed:
        report.row(f"off vs before ({BEFORE})", "not measured", "<= 1.02x", "not measured")
        report.note(f"git archive {BEFORE} failed: {missing[:200]}")
        return
    for operation in ("client", "cache"):
        compared(report, timed, "off", "before", operation, 1.02)
    report.note(f"before: {finished['before']['imported']} ({BEFORE}, git archive)")


def compared(report: Report, timed: Stretches, ours: str, theirs: str, operation: str,
             limit: float | None) -> None:
    """One row: the median elapsed time per call of each side and their
    ratio, with ``limit`` as its goal (None: information); a note with the
    CPU time's and the per-round ratios."""
    mine, other = timed[ours][operation], timed[theirs][operation]
    wall = [statistics.median(timing.wall for timing in side) for side in (mine, other)]
    cpu = [statistics.median(timing.cpu for timing in side) for side in (mine, other)]
    ratio = wall[0] / wall[1]
    goal = "(info)" if limit is None else f"<= {limit:.2f}x"
    report.row(f"{LABELS[operation]}: {ours} vs {theirs}",
               f"{wall[0]:.2f} vs {wall[1]:.2f} us = {ratio:.3f}x", goal,
               None if limit is None else ratio <= limit)
    ratios = [a.wall / b.wall for a, b in zip(mine, other, strict=True)]
    low, middle, high = statistics.quantiles(ratios, n=4)
    report.note(f"CPU time {cpu[0]:.2f} vs {cpu[1]:.2f} us = {cpu[0] / cpu[1]:.3f}x; "
                f"per-round ratios: median {middle:.3f}, middle half {low:.3f}-{high:.3f}")


def describe(report: Report, finished: dict[str, dict[str, Any]], rounds: int) -> None:
    calls = ", ".join(f"{LABELS[name]} {count}" for name, count in CALLS.items())
    report.note(f"{rounds} rounds, each side in its own process ({', '.join(finished)}), "
                f"the order reversed every other round; a stretch: {calls} calls in an app "
                "context; CPU time: the calling thread's (time.thread_time); the processes "
                "inherit this one's CPU")
    on = finished["on"]["recorded"]
    report.note(f"on: {len(on['metrics'])} metrics read at the end: " + ", ".join(on["metrics"]))
    if "spans" in finished:
        report.note(f"spans: {finished['spans']['recorded']['spans']} spans exported")
