"""Fault injection under load: what an app on flask-core-redis holds, survives
and loses while Redis fails.

    bash scripts/chaos                      # or: .venv/bin/python -m chaos.run

For each topology (one server; Sentinel with 1 master, 1 replica and 3
sentinels; a Cluster of 3 masters and 3 replicas) the run starts the servers
behind proxies (chaos/topologies.py), the harness app under gunicorn with
several worker processes and an RQ worker (chaos/processes.py), and the load
driver in a process of its own (chaos/load.py). It then injects each fault of
the topology's schedule (chaos/faults.py) in turn, each in a window: a quiet
stretch, the fault, a recovery stretch, a presence check once a presence TTL
has passed. A topology runs once per setup of SETUPS (below): the default
policy against every fault; on Sentinel and Cluster, REDIS_RETRY_DEADLINE
against a master kill and a failover; on Cluster, Redis's full-coverage
default against a master kill. Once the load stops, the run reads every store
back and prints the tables (chaos/report.py), which it also writes to
chaos-report.md. Every wait is bounded; the run stops by itself."""

from __future__ import annotations

import argparse
import platform
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).absolute().parent.parent))

from chaos import faults, report
from chaos.harness import QUEUE
from chaos.processes import AppServer, LoadDriver, RqWorker
from chaos.topologies import Cluster, Sentinel, Topology, start

#: Seconds of load before the first fault.
WARMUP_SECONDS = 4.0
#: Quiet seconds before each fault, and recovery seconds after it.
BEFORE_SECONDS = 3.0
AFTER_SECONDS = 4.0
PRESENCE_TTL_SECONDS = 3
OTP_MAX_ATTEMPTS = 5
#: The retry deadline the second pass shows.
DEADLINE_MS = 10_000
#: Upper bound on one topology's load, whatever the faults take.
MAX_LOAD_SECONDS = 300.0


@dataclass
class Setup:
    """One pass over a topology: its name in the tables, the app's settings
    beyond the run's own, the servers' extra arguments, the faults."""

    name: str
    schedule: list[faults.Fault]
    settings: dict[str, str] = field(default_factory=dict)
    server_args: list[str] = field(default_factory=list)


DEADLINE = {"REDIS_RETRY_DEADLINE": str(DEADLINE_MS)}
F = faults
SETUPS: dict[str, list[Setup]] = {
    "standalone": [Setup("3 retries", [F.RESTART, F.KILL, F.PAUSE, F.LATENCY, F.DROP])],
    "sentinel": [
        Setup("3 retries", [F.RESTART, F.KILL, F.PAUSE, F.LATENCY, F.DROP,
                            F.SENTINEL_FAILOVER]),
        Setup(f"deadline {DEADLINE_MS // 1000} s", [F.KILL, F.SENTINEL_FAILOVER], DEADLINE)],
    "cluster": [
        Setup("3 retries", [F.RESTART, F.KILL, F.PAUSE, F.LATENCY, F.DROP,
                            F.CLUSTER_FAILOVER]),
        Setup(f"deadline {DEADLINE_MS // 1000} s", [F.KILL, F.CLUSTER_FAILOVER], DEADLINE),
        # Redis's own default: every master refuses every command while a
        # failed master's slots have no master (see topologies.Cluster).
        Setup("3 retries, full coverage", [F.KILL],
              server_args=["--cluster-require-full-coverage", "yes"])],
}


@dataclass
class Pass:
    """One topology under one setup: a row per fault, and the scan for codes."""

    rows: list[report.Figures]
    codes_issued: int
    codes_in_plain_text: int


def run_topology(name: str, setup: Setup, workdir: Path, seed: int) -> Pass:
    """Start ``name``, drive it through the setup's faults under load, read
    back."""
    workdir.mkdir(parents=True)
    topology = start(name, workdir, setup.server_args)
    stopped: list[Any] = []
    try:
        secret = secrets.token_hex(16)
        settings = {"REDIS_URL": topology.url, "SECRET_KEY": secret,
                    "REDIS_PRESENCE_TTL": str(PRESENCE_TTL_SECONDS),
                    "REDIS_OTP_MAX_ATTEMPTS": str(OTP_MAX_ATTEMPTS), **setup.settings}
        app = AppServer(workdir / "app", settings)
        stopped.append(app)
        has_queue = not isinstance(topology, Cluster)
        if has_queue:
            stopped.append(RqWorker(workdir / "worker", settings, QUEUE))
        plan = {"base": app.base, "secret_key": secret, "max_seconds": MAX_LOAD_SECONDS,
                "otp_max_attempts": OTP_MAX_ATTEMPTS, "jobs": has_queue, "seed": seed,
                # WAIT needs a replica; a Cluster pipeline cannot send it.
                "wait": isinstance(topology, Sentinel),
                "shard_tag": topology.healthy_tag() if isinstance(topology, Cluster)
                else None}
        driver = LoadDriver(workdir / "load", plan)
        stopped.append(driver)
        time.sleep(WARMUP_SECONDS)
        windows = [inject(topology, setup, fault, driver) for fault in setup.schedule]
        records = driver.finish()
        stores = read_back(app, topology, records, has_queue)
        return Pass([report.figures(window, records, stores, OTP_MAX_ATTEMPTS)
                     for window in windows],
                    sum(bool(flow["code"]) for flow in records["flows"]),
                    stores.codes_in_plain_text)
    finally:
        for process in reversed(stopped):
            process.stop()
        topology.stop()


def inject(topology: Topology, setup: Setup, fault: faults.Fault,
           driver: LoadDriver) -> report.Window:
    """One fault's window; a fault that cannot be injected or healed marks
    its window failed, and the run goes on with the next."""
    time.sleep(BEFORE_SECONDS)
    window = report.Window(topology.name, setup.name, fault.name,
                           time.time() - BEFORE_SECONDS, time.time())
    print(f"  {topology.name}, {setup.name}: {fault.name}", flush=True)
    try:
        fault.inject(topology)
        window.lifted = time.time()
        time.sleep(AFTER_SECONDS)
        window.ends = time.time()
        time.sleep(max(0.0, window.lifted + PRESENCE_TTL_SECONDS + 1.5 - time.time()))
        check_presence(driver, fault.name)
        fault.heal(topology)
    except Exception as error:  # reported in the table; the others still run
        window.failed = f"{type(error).__name__}: {error}"[:120]
        window.lifted = window.ends = time.time()
        traceback.print_exc()
    return window


def check_presence(driver: LoadDriver, label: str, timeout: float = 20) -> None:
    """Ask the driver to compare the app's online users with its clients,
    and wait for it to have done so."""
    done = driver.log_path.read_text().count("checked")
    driver.command(f"check {label}")
    deadline = time.time() + timeout
    while driver.log_path.read_text().count("checked") <= done and time.time() < deadline:
        time.sleep(0.1)


def read_back(app: AppServer, topology: Topology, records: dict[str, Any],
              has_queue: bool) -> report.Stores:
    """What the stores hold now, through the app, and a scan of every key
    for an OTP code in plain text."""
    tokens = {op: [call["token"] for call in records["calls"] if call["op"] == op]
              for op in ("cache_set", "incr", "incr_wait", "job")}
    counted = tokens["incr"] + tokens["incr_wait"]
    present = set(app.post("/chaos/cache/read", {"keys": tokens["cache_set"]})["present"])
    values = app.post("/chaos/incr/read", {"tokens": counted})["values"]
    done = failed = None
    if has_queue:
        acked = {call["token"] for call in records["calls"]
                 if call["op"] == "job" and call["outcome"] == "ok"}
        deadline = time.time() + 30  # the worker drains the queue
        while True:
            jobs = app.post("/chaos/jobs/read", {})
            done, failed = set(jobs["done"]), set(jobs["failed"])
            if acked <= done | failed or time.time() > deadline:
                break
            time.sleep(0.5)
    return report.Stores(present, dict(zip(counted, values, strict=True)), done,
                         codes_in_plain_text(topology, records), failed)


def codes_in_plain_text(topology: Topology, records: dict[str, Any]) -> int:
    """Keys that hold a phone's issued code in plain text, in their name or a
    value, anywhere the phone's number is too (in the key's name or beside
    the code). Tied to the number: a code is six random digits, which
    any hex token may hold by chance."""
    codes = {flow["phone"]: flow["code"] for flow in records["flows"] if flow["code"]}
    hits = 0
    for key, values in topology.keys_and_values():
        for text in (key, *values):
            numbers = set(_numbers(text))
            phones = set(PHONE.findall(key)) | set(PHONE.findall(text))
            if any(codes.get(phone) in numbers for phone in phones):
                hits += 1
    return hits


#: A phone number as the OTP plugin writes it: + and its ASCII digits.
PHONE = re.compile(r"\+[0-9]{8,15}")


def _numbers(text: str) -> list[str]:
    """Every run of ASCII digits in ``text``, whole."""
    return re.findall(r"[0-9]+", text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["standalone", "sentinel", "cluster"],
                        help="one topology only (every setup of it)")
    parser.add_argument("--output", default="chaos-report.md", type=Path)
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's folder (server, app and load logs)")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every server and process is stopped.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    names = [args.only] if args.only else ["standalone", "sentinel", "cluster"]
    started = time.time()
    tables: list[str] = []
    folder = tempfile.mkdtemp(prefix="flask-core-redis-chaos-")
    print(f"the run's folder: {folder}", flush=True)
    try:
        for seed, name in enumerate(names, start=1):
            results = []
            for number, setup in enumerate(SETUPS[name]):
                print(f"{name}, {setup.name}: starting", flush=True)
                results.append(run_topology(name, setup, Path(folder) / f"{name}-{number}",
                                            seed * 10 + number))
            tables += section(name, results)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    heading = [
        "# Fault injection under load",
        "",
        f"{platform.node()}, {platform.python_implementation()} "
        f"{platform.python_version()}, redis-py {redis.__version__}; "
        f"{time.time() - started:.0f} s in all.",
        ""]
    text = "\n".join(heading + tables) + "\n"
    args.output.write_text(text)
    print(text)
    return 0


def section(name: str, results: list[Pass]) -> list[str]:
    rows = [row for result in results for row in result.rows]
    issued = sum(result.codes_issued for result in results)
    plain = sum(result.codes_in_plain_text for result in results)
    lines = [f"## {name}", "", "Traffic (HTTP requests to the app):", "",
             *report.traffic_table(rows), "", "Data:", "", *report.data_table(rows), "",
             f"OTP codes issued: {issued}; keys or values holding one in plain text "
             f"after the run: {plain}.", ""]
    wrong = report.presence_notes(rows)
    if wrong:
        lines += ["Presence checks that got a user wrong:", "", *wrong, ""]
    waited = report.wait_table(rows)
    if len(waited) > 2:
        lines += ["INCR followed by WAIT 1 500 on the same connection, acknowledged only "
                  "once a replica has it (refused: no replica had it within 500 ms):", "",
                  *waited, ""]
    shard = report.shard_table(rows)
    if len(shard) > 2:
        lines += ["A writer confined to one healthy master's hash slot:", "", *shard, ""]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
