"""Presence figures 1-5: writes at 1/100/1,000 connections, online_many,
online_count, memory per user, and the spread of the load over Cluster masters.

Every call goes through the public API (``ext.presence``); key names are never
assumed, but to delete the replies kept for retries (:func:`settled`): memory
comes from ``INFO memory`` and load from ``INFO commandstats``."""

from __future__ import annotations

import base64
import itertools
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

from .measure import (
    Report,
    ServerTime,
    fmt_us,
    median_us,
    run_threads,
    section,
    time_op,
)
from .topologies import Topology

#: The top-level commands each presence call sends, as the plugin stands;
#: checked against commandstats at every figure (a change that sends something
#: else is counted by what it sends, with a WARNING note).
HEARTBEAT_TOP = frozenset({"zadd", "zscore"})  # plain commands: renew, move the mark
SCRIPT_TOP = frozenset({"evalsha"})  # open, close, online_many: one script per shard
COUNT_TOP = frozenset({"zcount"})  # online_count: one ZCOUNT per shard, pipelined
CONNECTIONS = (1, 100, 1000)
TTL = 3600  # nothing expires during a run
#: Heartbeat vs SET: alternating rounds of this many calls each.
ROUNDS, PER_ROUND = 5, 200
REOPENS = 100
#: Seconds a fill may take before it stops short (and says so).
FILL_BUDGET = {"memory": 100.0, "standalone": 60.0, "cluster": 60.0}


def new_sid(rng: random.Random) -> str:
    """A 20-character id, like a Socket.IO sid."""
    return base64.urlsafe_b64encode(rng.randbytes(15)).decode()


def counted(result: ServerTime | None) -> str:
    return f" [{'+'.join(sorted(result.counted))}]" if result else ""


def explain(report: Report, label: str, result: ServerTime | None, always: bool) -> None:
    if result is not None and (always or result.warning):
        report.note(f"{label}: {result.describe()}")


def fill(top: Topology, work: Any, total: int, deadline: float) -> tuple[int, float]:
    """Run ``work(i)`` for ``total`` indices on the topology's threads: (calls
    made, seconds)."""
    started = time.perf_counter()
    done = run_threads(work, total, top.threads, deadline, top.app.app_context)
    return done, time.perf_counter() - started


def fill_note(report: Report, what: str, done: int, total: int, seconds: float,
              threads: int) -> None:
    rate = seconds / max(1, done) * 1e6
    text = (f"filled {done:,} {what} in {seconds:.1f} s ({rate:.0f} us per call, "
            f"{threads} thread{'s' if threads > 1 else ''})")
    if done < total:
        text += f"; STOPPED SHORT of {total:,}: the fill budget ran out"
    elif total >= 100_000 and seconds > 10:
        text += f"; slower than the ~10 s expected for {total:,} calls"
    report.note(text)


# 1 -------------------------------------------------------------------------

def writes(top: Topology, report: Report, rng: random.Random) -> None:
    report.section("1. presence writes: one user holding 1 / 100 / 1,000 connections")
    clock, raw = top.clock, top.raw
    assert clock is not None
    keys = itertools.cycle(range(10_000))

    def set_key() -> None:
        raw.set(f"presence:user:{next(keys)}", 1, ex=60)

    base, base_wall = time_op(clock, set_key, 1000, {"set"})
    assert base is not None
    report.row("SET presence:user:<id> 1 EX 60 (baseline)",
               f"{fmt_us(base.per_op_us)}{counted(base)}", "baseline")
    explain(report, "SET", base, always=True)
    presence = top.ext.presence
    firsts: dict[str, float] = {}
    for n in CONNECTIONS:
        user = f"fig1-{n}"
        sids = [new_sid(rng) for _ in range(n)]
        started = time.perf_counter()
        for sid in sids:
            presence.connect(user, sid, TTL)
        setup = time.perf_counter() - started
        beats = itertools.cycle([rng.choice(sids) for _ in range(1000)])
        expired = []

        def beat(user: str = user, beats: Any = beats, expired: list[bool] = expired) -> None:
            if not presence.heartbeat(user, next(beats), TTL):
                expired.append(True)

        rounds = []
        for _ in range(ROUNDS):  # alternating, so that drift hits both alike
            heartbeat, heartbeat_wall = time_op(clock, beat, PER_ROUND, HEARTBEAT_TOP, 5)
            baseline, _ = time_op(clock, set_key, PER_ROUND, {"set"}, 0)
            assert heartbeat is not None and baseline is not None
            rounds.append((heartbeat, baseline, heartbeat_wall))
        heartbeat_us = statistics.median(h.per_op_us for h, _, _ in rounds)
        ratio = statistics.median(h.per_op_us / b.per_op_us for h, b, _ in rounds)
        heartbeat_wall = statistics.median(wall for _, _, wall in rounds)
        heartbeat = rounds[-1][0]
        closes, reopens = clock.tally(), clock.tally()
        close_wall = reopen_wall = 0.0
        wrong_close = 0
        for number, sid in enumerate([rng.choice(sids) for _ in range(REOPENS + 3)]):
            measured = number >= 3  # the first three only load the scripts
            with section(closes if measured else None):
                started = time.perf_counter()
                still_online = presence.mark_offline(user, sid)
                close_wall += time.perf_counter() - started if measured else 0
            wrong_close += still_online != (n > 1)
            with section(reopens if measured else None):
                started = time.perf_counter()
                presence.mark_online(user, TTL, connection_id=sid)
                reopen_wall += time.perf_counter() - started if measured else 0
        close, reopen = closes.result(SCRIPT_TOP), reopens.result(SCRIPT_TOP)

        label = f"{n:,} connection{'s' if n > 1 else ''}"
        report.row(f"heartbeat, {label}",
                   f"{fmt_us(heartbeat_us)} = {ratio:.1f}x SET{counted(heartbeat)}",
                   "<= 3x SET", ratio <= 3)
        for name, result in (("mark_online (reopen one)", reopen),
                             ("mark_offline (close one)", close)):
            firsts.setdefault(name, result.median_us)
            report.row(f"{name}, {label}", f"{fmt_us(result.median_us)} = "
                       f"{result.median_us / firsts[name]:.1f}x 1 conn{counted(result)}",
                       "flat (info)")
        explain(report, "heartbeat", heartbeat, always=n == 1)
        explain(report, "mark_online", reopen, always=n == 1)
        explain(report, "mark_offline", close, always=n == 1)
        report.note(f"wall per call: heartbeat {fmt_us(heartbeat_wall)}, mark_online "
                    f"{fmt_us(reopen_wall / REOPENS * 1e6)}, mark_offline "
                    f"{fmt_us(close_wall / REOPENS * 1e6)}, SET {fmt_us(base_wall)}; "
                    f"{n:,} connects took {setup:.2f} s")
        if expired:
            report.note(f"PRODUCT? heartbeat said {len(expired)} live connections had "
                        "timed out")
        if wrong_close:
            report.note(f"PRODUCT? mark_offline's 'still online' was wrong {wrong_close} "
                        f"times of {REOPENS + 3} (expected {n > 1})")
        presence.mark_offline(user)
    report.note(f"heartbeat vs SET: server time, median of {ROUNDS} alternating rounds of "
                f"{PER_ROUND} calls each (a random connection per heartbeat); mark_online "
                f"and mark_offline: median of {REOPENS} single-call measurements each")


# 2 -------------------------------------------------------------------------

def online_many(top: Topology, report: Report) -> None:
    report.section("2. online_many(10,000) vs 10,000 x EXISTS on raw redis-py")
    top.flush()
    presence, raw = top.ext.presence, top.raw
    users = [f"om-{i}" for i in range(10_000)]
    done, seconds = fill(top, lambda i: presence.mark_online(users[i], TTL), len(users),
                         time.monotonic() + FILL_BUDGET[top.name])
    fill_note(report, "users with mark_online", done, len(users), seconds, top.threads)
    pipe = raw.pipeline(transaction=False)
    for user in users:
        pipe.set(f"presence:user:{user}", "1", ex=TTL)
    pipe.execute()
    ours: list[float] = []
    theirs: list[float] = []
    flags: dict[str, bool] = {}
    presence.online_many(users[:10])
    for round_ in range(7):  # alternating; the slow loop only three times
        started = time.perf_counter()
        flags = presence.online_many(users)
        ours.append(time.perf_counter() - started)
        if round_ % 2 == 0 and len(theirs) < 3:
            started = time.perf_counter()
            found = sum(raw.exists(f"presence:user:{user}") for user in users)
            theirs.append(time.perf_counter() - started)
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    ratio = theirs_s / ours_s
    report.row("online_many(10,000) vs 10,000 x EXISTS",
               f"{ours_s * 1e3:.1f} ms vs {theirs_s * 1e3:.0f} ms = {ratio:.1f}x",
               ">= 100x faster", ratio >= 100)
    report.note(f"median of {len(ours)} online_many and {len(theirs)} EXISTS-loop rounds, "
                f"wall; EXISTS found {found:,} of {len(users):,}")
    online = sum(flags.values())
    if online != done:
        report.note(f"PRODUCT? online_many says {online:,} of the {done:,} users marked "
                    "online are online")
    if top.clock:
        result, _ = time_op(top.clock, lambda: presence.online_many(users), 5, SCRIPT_TOP,
                            warmup=1)
        assert result is not None
        report.row("online_many(10,000) server time",
                   f"{fmt_us(result.per_op_us)}{counted(result)}", "(info)")
        explain(report, "online_many", result, always=True)


# 3 and 4 -------------------------------------------------------------------

@dataclass
class MemoryFill:
    users: int
    before: int
    with_replies: int  # right after the fill: the replies kept for retries included
    after: int | None = None  # once those replies are gone (None: not measured)

    @property
    def per_user(self) -> float:
        """Bytes per user, the replies each call keeps for its retries included."""
        return (self.with_replies - self.before) / max(1, self.users)

    @property
    def per_user_settled(self) -> float:
        """Bytes per user once the replies are gone, as they are a minute or two
        after the fill (the replay window)."""
        assert self.after is not None
        return (self.after - self.before) / max(1, self.users)


#: Key patterns of the replies the presence scripts keep for retries: records
#: in one string per shard and second, and replies of their own (rare).
REPLY_PATTERNS = ("*:replies:*", "*:reply:*")


def settled(top: Topology, users: int, before: int) -> MemoryFill:
    """The memory right after a fill, and once the replies the calls keep for
    their retries are gone (they expire after the replay window): deleted here."""
    with_replies = top.used_memory()
    for client in top.masters or [top.raw]:
        for pattern in REPLY_PATTERNS:
            for keys in batched(client.scan_iter(match=pattern, count=1000), 1000):
                pipe = client.pipeline(transaction=False)
                for key in keys:  # one by one: on a cluster node they span slots
                    pipe.unlink(key)
                pipe.execute()
    return MemoryFill(users, before, with_replies, top.used_memory())


def batched(items: Any, size: int) -> Any:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


#: The connect storm whose memory, replies included, figure 4 holds to its goal.
STORM_USERS = 10_000


def online_count(top: Topology, report: Report) -> list[MemoryFill]:
    """Figure 3; on standalone, also the memory of the default-connection
    users it fills (figure 4's first rows): right after the first
    ``STORM_USERS`` connect, and at the end. On a server, the server time of
    the opens from 1,000 to ``STORM_USERS`` users."""
    report.section("3. online_count at 1,000 / 10,000 / 100,000 online users")
    presence = top.ext.presence
    measure_memory = top.name == "standalone"
    # Open the fill threads' connections before the baseline, then flush.
    run_threads(lambda i: presence.mark_online(f"warm-{i}", TTL), top.threads * 4,
                top.threads, time.monotonic() + 30, top.app.app_context)
    top.flush()
    before = top.used_memory() if measure_memory else 0
    deadline = time.monotonic() + FILL_BUDGET[top.name]
    filled, spent, first_wall = 0, 0.0, 0.0
    fills: list[MemoryFill] = []
    for target in (1_000, STORM_USERS, 100_000):
        offset = filled
        opens = top.clock.tally() if top.clock and target == STORM_USERS else None
        with section(opens):
            done, seconds = fill(top, lambda i, offset=offset: presence.mark_online(
                f"oc-{offset + i}", TTL), target - filled, deadline)
        filled, spent = filled + done, spent + seconds
        if opens is not None:
            opens.ops = done
            result = opens.result(SCRIPT_TOP)
            report.row(f"mark_online server time, users {offset + 1:,}-{filled:,}",
                       f"{fmt_us(result.per_op_us)} per open{counted(result)}", "(info)")
            explain(report, "connect storm", result, always=False)
        if measure_memory and target == STORM_USERS:
            fills.append(MemoryFill(filled, before, top.used_memory()))
        if filled < target:
            report.note(f"fill budget ({FILL_BUDGET[top.name]:.0f} s) ran out at "
                        f"{filled:,} users")
        count = presence.online_count()
        server, _ = time_op(top.clock, presence.online_count, 200, COUNT_TOP)
        wall = median_us(presence.online_count, 50, rounds=5)
        first_wall = first_wall or wall
        value = f"{fmt_us(wall)} wall"
        if server is not None:
            value += f", {fmt_us(server.per_op_us)} server"
        if target == 1_000:
            report.row(f"online_count, {filled:,} online", value, "flat")
        else:
            value += f" ({wall / first_wall:.1f}x 1k)"
            final = target == 100_000
            status: bool | str | None = (wall <= 1000) if final else None
            if final and filled < target and wall <= 1000:
                status = "not measured"  # met, but short of 100,000 users
            report.row(f"online_count, {filled:,} online", value,
                       "<= 1 ms wall at 100k" if final else "flat", status)
        explain(report, "online_count", server, always=target == 1_000)
        if count != filled:
            report.note(f"PRODUCT? online_count() = {count:,}, expected {filled:,}")
        if filled < target:
            break
    fill_note(report, "users with mark_online", filled, 100_000, spent, top.threads)
    if measure_memory and filled > STORM_USERS:
        fills.append(settled(top, filled, before))
    return fills


def memory(top: Topology, report: Report, defaults: list[MemoryFill],
           rng: random.Random) -> None:
    """Figure 4 (standalone): used_memory growth per online user."""
    report.section("4. memory per online user (INFO used_memory delta, flushed between)")
    presence = top.ext.presence
    for default in defaults:
        if default.after is None:  # the storm: replies included, as they are for a minute
            report.row(f"per user incl. replies, right after {default.users:,} connect",
                       f"{default.per_user:.0f} B", "<= 200 B",
                       default.per_user <= 200 and default.users >= STORM_USERS)
            continue
        report.row(f"per user incl. replies, {default.users:,} users",
                   f"{default.per_user:.0f} B ({default.per_user_settled:.0f} B without)",
                   "<= 200 B", default.per_user <= 200 and default.users >= 100_000)
        report.note("default connection (mark_online), users of figure 3; the replies "
                    "each open keeps for its retries (records in one string per shard and "
                    "second, expiring after the replay window): "
                    f"{default.per_user - default.per_user_settled:.1f} B per open")

    def measured(users: int, per_user: int, label: str) -> MemoryFill:
        top.flush()
        sids = [new_sid(rng) for _ in range(users * per_user)]
        before = top.used_memory()
        done, seconds = fill(top, lambda i: presence.mark_online(
            f"mem-{i // per_user}", TTL, connection_id=sids[i]), users * per_user,
            time.monotonic() + FILL_BUDGET[top.name])
        fill_note(report, label, done, users * per_user, seconds, top.threads)
        return settled(top, done // per_user, before)

    named = measured(100_000, 1, "users with one named connection")
    report.row(f"per user, one named 20-char connection ({named.users:,})",
               f"{named.per_user:.0f} B ({named.per_user_settled:.0f} B without replies)",
               "(info)")
    one = measured(5_000, 1, "users with one named connection")
    ten = measured(5_000, 10, "connections (10 per user)")
    assert one.after is not None and ten.after is not None
    extra = (ten.after - ten.before - (one.after - one.before)) / max(1, 9 * ten.users)
    report.row("per additional connection (5k users: 10 vs 1)", f"{extra:.0f} B", "(info)")
    report.note(f"5,000 users, once the replies are gone: {one.per_user_settled:.0f} B each "
                f"with 1 connection, {ten.per_user_settled:.0f} B each with 10")
    top.flush()


# 5 -------------------------------------------------------------------------

def spread(top: Topology, report: Report, rng: random.Random) -> None:
    """Figure 5 (Cluster): which master serves the presence commands."""
    report.section("5. heartbeat load over 10,000 users: share per master")
    assert top.clock is not None
    presence = top.ext.presence
    top.flush()
    users = [f"hb-{i}" for i in range(10_000)]
    sids = [new_sid(rng) for _ in users]
    done, seconds = fill(top, lambda i: presence.connect(users[i], sids[i], TTL), len(users),
                         time.monotonic() + FILL_BUDGET[top.name])
    fill_note(report, "users with connect", done, len(users), seconds, top.threads)
    order = [i for i in range(done) for _ in range(2)]
    rng.shuffle(order)
    tally = top.clock.tally()
    with tally.section(len(order)):
        beats, seconds = fill(top, lambda i: presence.heartbeat(users[order[i]],
                                                                sids[order[i]], TTL),
                              len(order), time.monotonic() + FILL_BUDGET[top.name])
    tally.ops = beats
    result = tally.result(HEARTBEAT_TOP)
    total = sum(result.per_master) or 1
    shares = [calls / total for calls in result.per_master]
    ports = [m.get_connection_kwargs()["port"] for m in top.masters]
    report.row("busiest master's share of presence commands",
               f"{max(shares):.0%} of {total:,} calls{counted(result)}", "<= 50%",
               max(shares) <= 0.5)
    report.row("share per master", ", ".join(
        f"{port}: {share:.0%}" for port, share in zip(ports, shares, strict=True)), "(info)")
    explain(report, "heartbeat load", result, always=True)
    report.note(f"{beats:,} heartbeats in {seconds:.1f} s on {top.threads} threads")
    top.flush()
