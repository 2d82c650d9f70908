"""The figures of one run, from the load driver's records, the windows the
run marked around each fault, and what the stores hold once the load has
stopped; and the tables they are printed as."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: The HTTP requests of the app's traffic figures (apart: the confined
#: writer's, and INCR + WAIT, which refuses by design while no replica is up).
HTTP_OPS = frozenset({"cache_set", "cache_get", "incr", "otp_issue", "otp_check", "job",
                      "broadcast"})
ERROR_KINDS = ("503", "error", "timeout")
#: An OTP check's answers that say the code is not there (lost, if it was
#: acknowledged, was right, and no earlier try may have used it up).
CODE_GONE = frozenset({"invalid", "expired"})
#: A cache write's detail when Redis did not have it right after: the
#: fail-open cache skipped it (an outage, or its breaker), by design.
NOT_STORED = "not stored"


@dataclass
class Window:
    """One fault: ``before`` to ``started`` is quiet, ``started`` to
    ``lifted`` the fault, ``lifted`` to ``ends`` the recovery."""

    topology: str
    setup: str
    fault: str
    before: float
    started: float
    lifted: float = math.nan
    ends: float = math.nan
    failed: str = ""

    def holds(self, at: float) -> bool:
        return self.before <= at < self.ends

    def phase(self, at: float) -> str:
        return ("before" if at < self.started else "during" if at < self.lifted
                else "after")


@dataclass
class Stores:
    """What the stores hold after the run."""

    cache_present: set[str]
    incr_values: dict[str, int]
    jobs_done: set[str] | None  # None: no queue on this topology
    codes_in_plain_text: int
    #: Jobs in RQ's failed registry: they ran and raised, or were abandoned.
    jobs_failed: set[str] | None = None


@dataclass
class Figures:
    window: Window
    served: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: Failed HTTP requests by what they asked (``cache_set``, ``otp_check``...).
    failed_by_request: dict[str, int] = field(default_factory=dict)
    latency: dict[str, tuple[float, float]] = field(default_factory=dict)
    back_to_zero_s: float | None = None
    lost: dict[str, int | None] = field(default_factory=dict)
    cache_skipped: int = 0
    jobs_failed: int | None = 0
    incr_twice: int = 0
    incr_applied_unacked: int = 0
    otp_double: int = 0
    otp_over_limit: int = 0
    presence: dict[str, Any] = field(default_factory=dict)
    connects_refused: int = 0
    waited: dict[str, int] = field(default_factory=dict)
    shard: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _p50_p99(calls: Iterable[dict[str, Any]]) -> tuple[float, float]:
    times = [call["ms"] for call in calls]
    return percentile(times, 0.50), percentile(times, 0.99)


def figures(window: Window, records: dict[str, Any], stores: Stores,
            otp_max_attempts: int) -> Figures:
    calls = [call for call in records["calls"] if window.holds(call["at"])]
    http = [call for call in calls if call["op"] in HTTP_OPS]
    result = Figures(window)
    result.served = sum(call["outcome"] == "ok" for call in http)
    result.errors = {kind: sum(call["outcome"] == kind for call in http)
                     for kind in ERROR_KINDS}
    failed = Counter(call["op"] for call in http if call["outcome"] != "ok")
    result.failed_by_request = dict(sorted(failed.items(), key=lambda item: (-item[1], item[0])))
    result.latency = {phase: _p50_p99(call for call in http if window.phase(call["at"]) == phase)
                      for phase in ("before", "during", "after")}
    failures = [call["at"] + call["ms"] / 1000 for call in http if call["outcome"] != "ok"]
    if failures:
        result.back_to_zero_s = max(failures) - window.started
    _data(result, calls, stores)
    _otp(result, [flow for flow in records["flows"] if window.holds(flow["at"])],
         otp_max_attempts)
    check = next((check for check in records["checks"] if check["label"] == window.fault),
                 None)
    result.presence = check or {}
    result.connects_refused = sum(call["op"] == "sio_connect" and call["outcome"] != "ok"
                                  for call in calls)
    shard = [call for call in calls if call["op"] == "shard"]
    if shard:
        result.shard = {
            "latency": {phase: _p50_p99(call for call in shard
                                        if window.phase(call["at"]) == phase)
                        for phase in ("before", "during", "after")},
            "errors": sum(call["outcome"] != "ok" for call in shard)}
    return result


def _data(result: Figures, calls: list[dict[str, Any]], stores: Stores) -> None:
    acked = [call for call in calls if call["outcome"] == "ok"]
    cache_sets = [call for call in acked if call["op"] == "cache_set"]
    result.cache_skipped = sum(call["detail"] == NOT_STORED for call in cache_sets)
    result.lost["cache"] = sum(call["detail"] != NOT_STORED
                               and call["token"] not in stores.cache_present
                               for call in cache_sets)
    jobs = [call["token"] for call in acked if call["op"] == "job"]
    if stores.jobs_done is not None:
        failed = stores.jobs_failed or set()
        result.jobs_failed = sum(token in failed for token in jobs)
        result.lost["queue"] = sum(token not in stores.jobs_done | failed for token in jobs)
    else:
        result.jobs_failed, result.lost["queue"] = None, None
    waited = [call for call in calls if call["op"] == "incr_wait"]
    result.lost["incr_wait"] = (sum(call["outcome"] == "ok"
                                    and not stores.incr_values.get(call["token"], 0)
                                    for call in waited) if waited else None)
    result.waited = {outcome: sum(call["outcome"] == outcome for call in waited)
                     for outcome in ("ok", "503")}
    incrs = [call for call in calls if call["op"] == "incr"]
    values = [(call, stores.incr_values.get(call["token"], 0)) for call in incrs]
    result.lost["incr"] = sum(call["outcome"] == "ok" and value == 0 for call, value in values)
    result.incr_twice = sum(value >= 2 for _, value in values)
    result.incr_applied_unacked = sum(call["outcome"] != "ok" and value >= 1
                                      for call, value in values)
    result.lost["broadcast"] = sum(call["op"] == "broadcast" and bool(call["detail"])
                                   and call["detail"]["missed"] > 0 for call in acked)


def _otp(result: Figures, flows: list[dict[str, Any]], max_attempts: int) -> None:
    def passed(flow: dict[str, Any]) -> int:
        return sum(answer.removeprefix("after-error:") == "ok" for answer in flow["answers"])

    result.lost["otp"] = sum(
        flow["wrong"] < max_attempts and not flow["wrong_unknown"] and flow["answers"]
        and flow["answers"][0] in CODE_GONE for flow in flows)
    result.otp_double = sum(passed(flow) >= 2 for flow in flows)
    result.otp_over_limit = sum(flow["wrong"] >= max_attempts and passed(flow) > 0
                                for flow in flows)


# Tables --------------------------------------------------------------------------

def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def _pair(pair: tuple[float, float]) -> str:
    return f"{_ms(pair[0])} / {_ms(pair[1])}"


def _count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _by_request(failed: dict[str, int]) -> str:
    return ", ".join(f"{op} {count}" for op, count in failed.items()) or "none"


def traffic_table(rows: list[Figures]) -> list[str]:
    lines = ["| fault | setup | served | 503 | other error | timeout | p50 / p99 ms before "
             "| during | after | errors until | failed requests |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        window = row.window
        if window.failed:
            lines.append(f"| {window.fault} | {window.setup} | run failed: {window.failed} "
                         "| | | | | | | | |")
            continue
        until = "no error" if row.back_to_zero_s is None else f"{row.back_to_zero_s:.1f} s"
        lines.append(
            f"| {window.fault} | {window.setup} | {row.served} | {row.errors['503']} "
            f"| {row.errors['error']} | {row.errors['timeout']} "
            f"| {_pair(row.latency['before'])} | {_pair(row.latency['during'])} "
            f"| {_pair(row.latency['after'])} | {until} "
            f"| {_by_request(row.failed_by_request)} |")
    return lines


def data_table(rows: list[Figures]) -> list[str]:
    lines = ["| fault | setup | cache writes skipped | lost: cache | OTP | queue | INCR "
             "| jobs failed | INCR twice "
             "| INCR done, caller told it failed | OTP passed twice | OTP past the limit "
             "| presence ghosts / missing | Socket.IO connects refused "
             "| broadcasts some client missed |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: | ---: | ---: |"]
    for row in rows:
        if row.window.failed:
            continue
        presence = row.presence
        seen = (f"{len(presence['ghosts'])} / {len(presence['missing'])} "
                f"of {presence['connected']}" if presence.get("answered") else "not asked")
        lines.append(
            f"| {row.window.fault} | {row.window.setup} | {row.cache_skipped} "
            f"| {_count(row.lost['cache'])} "
            f"| {_count(row.lost['otp'])} | {_count(row.lost['queue'])} "
            f"| {_count(row.lost['incr'])} | {_count(row.jobs_failed)} | {row.incr_twice} "
            f"| {row.incr_applied_unacked} "
            f"| {row.otp_double} | {row.otp_over_limit} | {seen} | {row.connects_refused} "
            f"| {row.lost['broadcast']} |")
    return lines


def presence_notes(rows: list[Figures]) -> list[str]:
    """One line for each user a presence check got wrong, with what the
    load driver knew of it."""
    return [f"- after {row.window.fault} ({row.window.setup}), {kind} {user}: "
            f"{row.presence.get('whereabouts', {}).get(user, '?')}"
            for row in rows for kind in ("ghosts", "missing")
            for user in row.presence.get(kind, [])]


def wait_table(rows: list[Figures]) -> list[str]:
    lines = ["| fault | setup | acknowledged | refused | acknowledged, then lost |",
             "| --- | --- | ---: | ---: | ---: |"]
    for row in rows:
        if row.lost.get("incr_wait") is not None:
            lines.append(f"| {row.window.fault} | {row.window.setup} | {row.waited['ok']} "
                         f"| {row.waited['503']} | {row.lost['incr_wait']} |")
    return lines


def shard_table(rows: list[Figures]) -> list[str]:
    lines = ["| fault | setup | p50 / p99 ms before | during | after | errors |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        if row.shard:
            latency = row.shard["latency"]
            lines.append(f"| {row.window.fault} | {row.window.setup} "
                         f"| {_pair(latency['before'])} | {_pair(latency['during'])} "
                         f"| {_pair(latency['after'])} | {row.shard['errors']} |")
    return lines
