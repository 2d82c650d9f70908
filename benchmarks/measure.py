"""Timing helpers, server time from ``INFO commandstats``, and the report table.

Server time of an operation: ``CONFIG RESETSTAT`` on every master, run the
operation, then sum ``usec`` of its top-level commands over the masters and
divide by the number of operations. Redis 7 also records the commands a script
(EVALSHA/EVAL/FCALL) or a transaction (EXEC) runs under their own names, and
the script's or EXEC's usec already includes them, so only the commands the
client itself sends are summed: each measured operation states that set, and
it is checked against what appeared in commandstats (``counted`` below).
"""

from __future__ import annotations

import statistics
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import redis

ROUNDS = 9

#: Commands that run other commands (recorded under their own names too).
CONTAINERS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro",
                        "exec"})
#: Sent by the client with a container, never run inside one.
TRANSACTION_ONLY = frozenset({"multi", "discard", "watch", "unwatch"})
#: Sent by the harness, the replicas or the clients' bookkeeping, never by an
#: operation under measurement.
HARNESS = frozenset({"config", "info", "replconf", "ping", "cluster", "command", "client",
                     "hello", "select", "readonly", "readwrite", "auth", "psync", "sync",
                     "script"})


# Wall time -----------------------------------------------------------------

def mean_us(operation: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        operation()
    return (time.perf_counter() - started) / count * 1e6


def median_us(operation: Callable[[], object], count: int, rounds: int = ROUNDS) -> float:
    """Median over ``rounds`` of the mean time of one call, in microseconds."""
    return statistics.median(mean_us(operation, count) for _ in range(rounds))


@dataclass
class Comparison:
    ours_us: float
    theirs_us: float
    ratio: float  # median of the per-round ratios ours / theirs


def compare(ours: Callable[[], object], theirs: Callable[[], object], count: int,
            rounds: int = ROUNDS) -> Comparison:
    """Time both in alternating rounds, so that drift in machine speed hits
    both alike: the medians and the median of the per-round ratios."""
    ours(), theirs()  # warm both up
    pairs = [(mean_us(ours, count), mean_us(theirs, count)) for _ in range(rounds)]
    return Comparison(statistics.median(a for a, _ in pairs),
                      statistics.median(b for _, b in pairs),
                      statistics.median(a / b for a, b in pairs))


def run_threads(work: Callable[[int], object], total: int, threads: int, deadline: float,
                enter: Callable[[], AbstractContextManager[Any]] = nullcontext) -> int:
    """Call ``work(i)`` for i in 0..total-1 on ``threads`` threads, each inside
    ``enter()`` (an app context, say), stopping at ``deadline``
    (time.monotonic()); how many calls were made."""
    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    errors: list[BaseException] = []

    def worker() -> None:
        with enter():
            work_through()

    def work_through() -> None:
        while not errors:
            with lock:
                index = state["next"]
                if index >= total or time.monotonic() > deadline:
                    return
                state["next"] += 1
            try:
                work(index)
            except BaseException as error:  # handed to the caller
                errors.append(error)
                return
            with lock:
                state["done"] += 1

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, threads))]
    for thread in pool:
        thread.start()
    try:
        for thread in pool:
            thread.join()
    except BaseException:  # Ctrl-C: the workers stop at their next call
        state["next"] = total
        raise
    if errors:
        raise errors[0]
    return state["done"]


# Server time ---------------------------------------------------------------

def _base(name: str) -> str:
    return name.split("|", 1)[0]


@dataclass
class ServerTime:
    ops: int
    counted: frozenset[str]
    usec: float  # total of the counted commands, all masters
    calls: dict[str, int]  # counted command -> calls, all masters
    per_master: list[int]  # calls of the counted commands, per master
    seen: list[str]  # every command that ran, harness excluded
    median_us: float  # median over the sections of their time per op (one call each: robust)
    warning: str = ""

    @property
    def per_op_us(self) -> float:
        return self.usec / max(1, self.ops)

    def describe(self) -> str:
        calls = ", ".join(f"{name} x{self.calls.get(name, 0) / max(1, self.ops):.2f}"
                          for name in sorted(self.counted))
        text = f"counted per op: {calls or 'nothing'}; ran: {' '.join(self.seen) or '-'}"
        return text + (f"; {self.warning}" if self.warning else "")


class Tally:
    """Commandstats summed over several measured sections."""

    def __init__(self, masters: list[redis.Redis]) -> None:
        self.masters = masters
        self.ops = 0
        self.stats: list[dict[str, list[int]]] = [{} for _ in masters]
        self.sections: list[tuple[int, dict[str, int]]] = []  # (ops, usec by command)

    @contextmanager
    def section(self, ops: int = 1) -> Iterator[None]:
        for master in self.masters:
            master.config_resetstat()
        yield
        usec: dict[str, int] = {}
        for totals, master in zip(self.stats, self.masters, strict=True):
            for key, value in master.info("commandstats").items():
                name = key.removeprefix("cmdstat_")
                entry = totals.setdefault(name, [0, 0, 0])
                entry[0] += int(value["calls"])
                entry[1] += int(value["usec"])
                entry[2] += int(value.get("failed_calls", 0)) + int(
                    value.get("rejected_calls", 0))
                usec[name] = usec.get(name, 0) + int(value["usec"])
        self.ops += ops
        self.sections.append((ops, usec))

    def result(self, top_level: set[str] | frozenset[str]) -> ServerTime:
        """Sum the ``top_level`` commands; if what ran says otherwise (a script
        or transaction not declared, or a declared command that never ran),
        count what ran instead and say so."""
        ran: set[str] = set()
        for totals in self.stats:
            ran.update(name for name in totals if _base(name) not in HARNESS)
        declared = frozenset(top_level)
        containers = {name for name in ran if name in CONTAINERS}
        warning = ""
        if declared <= ran and containers <= declared:
            counted = declared
        else:
            counted = frozenset(containers | (ran & TRANSACTION_ONLY)) if containers \
                else frozenset(ran)
            warning = (f"WARNING: declared top-level {sorted(declared)}, but ran "
                       f"{sorted(ran)}; counted {sorted(counted)}")
        failed = sum(totals.get(name, [0, 0, 0])[2] for totals in self.stats
                     for name in counted)
        if failed:
            warning = (warning + "; " if warning else "") + f"WARNING: {failed} failed calls"
        calls = {name: sum(t.get(name, [0])[0] for t in self.stats) for name in counted}
        usec = sum(t.get(name, [0, 0])[1] for t in self.stats for name in counted)
        per_master = [sum(t.get(name, [0])[0] for name in counted) for t in self.stats]
        median = statistics.median(sum(section.get(name, 0) for name in counted) / max(1, ops)
                                   for ops, section in self.sections) if self.sections else 0.0
        return ServerTime(self.ops, counted, usec, calls, per_master, sorted(ran), median,
                          warning)


class ServerClock:
    """Server time on a set of masters (none: an in-process server, n/a)."""

    def __init__(self, masters: list[redis.Redis]) -> None:
        self.masters = masters

    def tally(self) -> Tally:
        return Tally(self.masters)

    def measure(self, operation: Callable[[], object], count: int,
                top_level: set[str] | frozenset[str], warmup: int = 20) -> ServerTime:
        result, _ = time_op(self, operation, count, top_level, warmup)
        assert result is not None
        return result


def time_op(clock: ServerClock | None, operation: Callable[[], object], count: int,
            top_level: set[str] | frozenset[str], warmup: int = 20,
            ) -> tuple[ServerTime | None, float]:
    """Server time (None without a server) and wall time of one call, in us."""
    for _ in range(warmup):  # scripts cached, connections made
        operation()
    if clock is None:
        return None, mean_us(operation, count)
    tally = clock.tally()
    with tally.section(count):
        wall = mean_us(operation, count)
    return tally.result(top_level), wall


def section(tally: Tally | None) -> AbstractContextManager[None]:
    return nullcontext() if tally is None else tally.section()


# Report --------------------------------------------------------------------

NAME, VALUE, GOAL = 52, 40, 20


@dataclass
class Row:
    topology: str
    name: str
    value: str
    goal: str
    status: str


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    topology: str = ""

    def heading(self, topology: str, description: str) -> None:
        self.topology = topology
        print(f"\n=== {topology}: {description}", flush=True)
        print(f"  {'name':<{NAME}} | {'value':<{VALUE}} | {'goal':<{GOAL}} | met/MISSED",
              flush=True)
        print(f"  {'-' * NAME}-+-{'-' * VALUE}-+-{'-' * GOAL}-+-----------", flush=True)

    def section(self, title: str) -> None:
        print(f"  [{title}]", flush=True)

    def row(self, name: str, value: str, goal: str = "", met: bool | str | None = None
            ) -> None:
        status = met if isinstance(met, str) else {True: "met", False: "MISSED"}.get(met, "")
        self.rows.append(Row(self.topology, name, value, goal, str(status)))
        print(f"  {name:<{NAME}} | {value:<{VALUE}} | {goal:<{GOAL}} | {status}", flush=True)

    def note(self, text: str) -> None:
        print(f"      - {text}", flush=True)

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """A figure that raises becomes one MISSED row; the run goes on."""
        try:
            yield
        except Exception as error:
            self.row(what, f"ERROR {type(error).__name__}", "runs", False)
            for line in traceback.format_exception_only(error)[-1:]:
                self.note(line.strip()[:300])
            where = traceback.extract_tb(error.__traceback__)[-1]
            self.note(f"at {where.filename}:{where.lineno} ({where.name})")

    def with_status(self, status: str) -> list[Row]:
        return [row for row in self.rows if row.status == status]


def fmt_us(us: float) -> str:
    if us >= 10_000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.1f} us"
