"""The load driver: a process of its own that drives the harness app over
HTTP and Socket.IO while the run injects faults, and records every call.

    python -m chaos.load PLAN.json      # commands on stdin: check LABEL, stop

Threads, each bounded in time (the plan's ``max_seconds``) and in count:

- web: cache writes (each read back at once: did Redis take it?) and reads,
  and INCRs of keys of their own, some of them followed by WAIT for a replica
  (not on Cluster);
- shard (Cluster only): writes confined to one hash slot of a healthy master;
- otp: issue a code, sometimes send wrong ones, verify it, verify it again;
- jobs: enqueue RQ jobs (not on Cluster: RQ does not support it);
- churn: Socket.IO clients (websocket, logged in by a signed session cookie)
  come and go; the server heartbeats them as presence;
- broadcasts: a Socket.IO event sent through one gunicorn worker, which every
  client of every worker should get (through the app's Redis).

``check LABEL`` compares who the app says is online with the clients that
are connected. ``stop`` (or the time bound) writes every record to the plan's
``output`` as JSON and exits."""

from __future__ import annotations

import json
import math
import random
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import socketio
from flask import Flask

from chaos.report import NOT_STORED

#: Seconds a request may take before it counts as a timeout.
REQUEST_TIMEOUT = 10.0
#: A client that connected or left less than this long ago is neither
#: expected online nor expected offline by a presence check.
SETTLE_SECONDS = 2.0
#: Upper bound on the calls of one thread.
MAX_CALLS = 200_000
#: Seconds between broadcasts, and how long one may take to reach everyone.
BROADCAST_SECONDS = 0.5
DELIVERY_SECONDS = 3.0


@dataclass
class Plan:
    base: str
    secret_key: str
    output: str
    max_seconds: float
    web_threads: int = 4
    think_seconds: float = 0.02
    clients: int = 16
    churn_seconds: float = 0.5
    otp_max_attempts: int = 5
    jobs: bool = True
    wait: bool = True
    shard_tag: str | None = None
    seed: int = 7


@dataclass
class Call:
    """One request: when it started (epoch seconds), how long it took (ms),
    what it was, and how it ended: ok, 503, error or timeout."""

    at: float
    ms: float
    op: str
    outcome: str
    token: str = ""
    detail: Any = None


@dataclass
class OtpFlow:
    """One code's life: issued, ``wrong`` wrong codes acknowledged (and
    ``wrong_unknown`` sent without an answer), the right code's answers."""

    at: float
    phone: str
    code: str = ""
    wrong: int = 0
    wrong_unknown: int = 0
    answers: list[str] = field(default_factory=list)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.flows: list[OtpFlow] = []
        self.checks: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)


class Driver:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.record = Recorder()
        self.stop = threading.Event()
        self.ends_at = time.time() + plan.max_seconds
        self.rng = random.Random(plan.seed)
        self.cookie_app = Flask("chaos-load")
        self.cookie_app.secret_key = plan.secret_key
        self.connected: dict[str, tuple[socketio.Client, float]] = {}
        self.left: dict[str, float] = {}
        #: Users whose connect is under way, and since when.
        self.joining: dict[str, float] = {}
        #: Each client's broadcasts received, and when it was connected.
        self.heard: dict[str, set[str]] = {}
        self.spans: dict[str, list[float]] = {}
        self.clients_lock = threading.Lock()

    # HTTP -------------------------------------------------------------------

    def call(self, session: requests.Session, method: str, path: str, op: str,
             token: str = "", body: Any = None) -> dict[str, Any] | None:
        """One request, recorded; its JSON body when it succeeded."""
        return self.recorded_call(session, method, path, op, token, body)[1]

    def recorded_call(self, session: requests.Session, method: str, path: str, op: str,
                      token: str = "", body: Any = None) -> tuple[Call, dict[str, Any] | None]:
        """One request: its record, and its JSON body when it succeeded."""
        started = time.time()
        detail: Any = None
        try:
            response = session.request(method, self.plan.base + path, json=body,
                                       timeout=REQUEST_TIMEOUT)
            outcome = ("ok" if response.ok else
                       "503" if response.status_code == 503 else "error")
            detail = None if response.ok else response.status_code
        except requests.Timeout:
            outcome, detail, response = "timeout", None, None
        except requests.RequestException as error:
            outcome, detail, response = "error", type(error).__name__, None
        call = Call(started, (time.time() - started) * 1000, op, outcome, token, detail)
        self.record.add(call)
        return call, response.json() if outcome == "ok" and response is not None else None

    def running(self) -> bool:
        return not self.stop.is_set() and time.time() < self.ends_at

    def web(self) -> None:
        session, rng, written = requests.Session(), random.Random(self.rng.random()), []
        for _ in range(MAX_CALLS):
            if not self.running():
                return
            choice = rng.random()
            token = uuid.uuid4().hex
            if choice < 0.3:
                call, reply = self.recorded_call(session, "PUT", f"/chaos/cache/{token}",
                                                 "cache_set", token, {"value": token})
                if reply is not None:
                    written.append(token)
                    call.detail = None if reply["stored"] else NOT_STORED
            elif choice < 0.7 and written:
                key = rng.choice(written)
                call, reply = self.recorded_call(session, "GET", f"/chaos/cache/{key}",
                                                 "cache_get", key)
                if reply is not None and reply["value"] != key:
                    call.detail = "miss"
            elif choice < 0.85 or not self.plan.wait:
                self.call(session, "POST", f"/chaos/incr/{token}", "incr", token)
            else:
                self.call(session, "POST", f"/chaos/incr-wait/{token}", "incr_wait", token)
            time.sleep(self.plan.think_seconds)

    def shard(self) -> None:
        self.post_tokens(f"/chaos/shard/{self.plan.shard_tag}", "shard", self.plan.think_seconds)

    def jobs(self) -> None:
        self.post_tokens("/chaos/jobs", "job", 0.1)

    def post_tokens(self, prefix: str, op: str, pause: float) -> None:
        """POST a fresh token under ``prefix`` again and again, ``pause``
        seconds apart, until the run stops."""
        session = requests.Session()
        for _ in range(MAX_CALLS):
            if not self.running():
                return
            token = uuid.uuid4().hex
            self.call(session, "POST", f"{prefix}/{token}", op, token)
            time.sleep(pause)

    def otp(self) -> None:
        session, rng = requests.Session(), random.Random(self.rng.random())
        for number in range(MAX_CALLS):
            if not self.running():
                return
            flow = OtpFlow(time.time(), f"+1555{self.plan.seed:02d}{number:05d}")
            issued = self.call(session, "POST", f"/chaos/otp/{flow.phone}", "otp_issue",
                               flow.phone)
            if issued is None:
                time.sleep(0.1)
                continue
            flow.code = issued["code"]
            # A third of the flows try wrong codes, some of them past the limit.
            wrong = rng.choice([0, 0, 0, 0, 1, self.plan.otp_max_attempts + 1])
            for _ in range(wrong):
                bad = f"{(int(flow.code) + 1) % 1_000_000:06d}"
                if self.call(session, "POST", f"/chaos/otp/{flow.phone}/check", "otp_check",
                             flow.phone, {"code": bad}) is None:
                    flow.wrong_unknown += 1
                else:
                    flow.wrong += 1
            for _ in range(2):  # the right code, twice: the second must not pass
                answer = self._check_until_answered(session, flow)
                flow.answers.append(answer)
            with self.record.lock:
                self.record.flows.append(flow)
            time.sleep(0.05)

    def _check_until_answered(self, session: requests.Session, flow: OtpFlow) -> str:
        """The right code's status; asked again while the app cannot answer
        (an answer that was lost is then marked ``after-error:``)."""
        failed = False
        while self.running():
            reply = self.call(session, "POST", f"/chaos/otp/{flow.phone}/check", "otp_check",
                              flow.phone, {"code": flow.code})
            if reply is not None:
                return ("after-error:" if failed else "") + str(reply["status"])
            failed = True
            time.sleep(0.2)
        return "unanswered"

    # Socket.IO ----------------------------------------------------------------

    def cookie(self, user: str) -> str:
        serializer = self.cookie_app.session_interface.get_signing_serializer(  # type: ignore[attr-defined]
            self.cookie_app)
        return str(serializer.dumps({"user": user}))

    def connect(self, user: str) -> None:
        client = socketio.Client(reconnection=False)
        heard = self.heard.setdefault(user, set())
        client.on("broadcast", lambda data: heard.add(str(data.get("text"))))
        started = time.time()
        with self.clients_lock:  # online once the server's handler has run
            self.joining[user] = started
        try:
            client.connect(self.plan.base, transports=["websocket"], wait_timeout=10,
                           headers={"Cookie": f"session={self.cookie(user)}"})
        except socketio.exceptions.ConnectionError as error:
            self.record.add(Call(started, (time.time() - started) * 1000, "sio_connect",
                                 "error", user, str(error)[:80]))
            with self.clients_lock:
                del self.joining[user]
            return
        self.record.add(Call(started, (time.time() - started) * 1000, "sio_connect", "ok",
                             user))
        with self.clients_lock:
            del self.joining[user]
            self.connected[user] = (client, time.time())
            self.spans[user] = [time.time(), math.inf]

    def leave(self, user: str) -> None:
        with self.clients_lock:
            client, _ = self.connected.pop(user)
            self.left[user] = self.spans[user][1] = time.time()
        client.disconnect()

    def broadcasts(self) -> None:
        """Socket.IO events sent through one worker to every client of every
        worker (over the app's Redis); see :meth:`missed`."""
        session = requests.Session()
        session.headers["Cookie"] = f"session={self.cookie('+17770000000')}"
        for number in range(MAX_CALLS):
            if not self.running():
                return
            self.call(session, "POST", "/api/broadcast", "broadcast", f"b{number}",
                      {"text": f"b{number}"})
            time.sleep(BROADCAST_SECONDS)

    def missed(self, call: Call) -> dict[str, int]:
        """How many of the clients connected from a second before an
        acknowledged broadcast to DELIVERY_SECONDS after it never got it."""
        expected = [user for user, (start, end) in self.spans.items()
                    if start <= call.at - 1 and end >= call.at + DELIVERY_SECONDS]
        return {"missed": sum(call.token not in self.heard[user] for user in expected),
                "of": len(expected)}

    def churn(self) -> None:
        for number in range(self.plan.clients):
            self.connect(f"+1666{self.plan.seed:02d}{number:05d}")
        for number in range(self.plan.clients, MAX_CALLS):
            if not self.running():
                return
            time.sleep(self.plan.churn_seconds)
            with self.clients_lock:
                users = list(self.connected)
            if users:
                self.leave(self.rng.choice(users))
            self.connect(f"+1666{self.plan.seed:02d}{number:05d}")

    def check_presence(self, label: str) -> None:
        """Who the app says is online, against the clients connected."""
        reply = self.call(requests.Session(), "GET", "/chaos/presence", "presence_check")
        now = time.time()
        with self.clients_lock:
            settled_in = {user for user, (client, at) in self.connected.items()
                          if now - at > SETTLE_SECONDS and client.connected}
            moving = {user for user, (_, at) in self.connected.items()
                      if now - at <= SETTLE_SECONDS}
            moving |= {user for user, at in self.left.items() if now - at <= SETTLE_SECONDS}
            moving |= set(self.joining)
            online = set(reply["online"]) if reply else None
            ghosts = sorted(online - settled_in - moving) if online is not None else []
            missing = sorted(settled_in - online) if online is not None else []
            whereabouts = {user: self.whereabouts(user, now) for user in ghosts + missing}
        self.record.checks.append({
            "label": label, "at": now, "answered": online is not None, "ghosts": ghosts,
            "missing": missing, "whereabouts": whereabouts, "connected": len(settled_in)})

    def whereabouts(self, user: str, now: float) -> str:
        """What the driver knows of a user a presence check got wrong."""
        if user in self.connected:
            client, at = self.connected[user]
            state = "connected" if client.connected else "its socket closed by the server"
            return f"{state}, joined {now - at:.1f} s before"
        if user in self.left:
            return f"left {now - self.left[user]:.1f} s before"
        return "never connected"

    # Running --------------------------------------------------------------------

    def run(self) -> None:
        workers = [self.web] * self.plan.web_threads + [self.otp, self.churn,
                                                         self.broadcasts]
        if self.plan.jobs:
            workers.append(self.jobs)
        if self.plan.shard_tag:
            workers.append(self.shard)
        threads = [threading.Thread(target=work, daemon=True) for work in workers]
        for thread in threads:
            thread.start()
        commands = threading.Thread(target=self.read_commands, daemon=True)
        commands.start()
        while self.running():
            time.sleep(0.1)
        self.stop.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT + 5)
        self.write()
        with self.clients_lock:
            clients = [client for client, _ in self.connected.values()]
        for client in clients:
            client.disconnect()

    def read_commands(self) -> None:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "check":
                self.check_presence(argument)
                print("checked", flush=True)
            elif command == "stop":
                self.stop.set()
                return

    def write(self) -> None:
        ended = time.time()
        with self.record.lock, self.clients_lock:
            for call in self.record.calls:
                if call.op == "broadcast" and call.outcome == "ok":
                    call.detail = (self.missed(call) if call.at + DELIVERY_SECONDS < ended
                                   else None)
            data = {"calls": [asdict(call) for call in self.record.calls],
                    "flows": [asdict(flow) for flow in self.record.flows],
                    "checks": self.record.checks}
        Path(self.plan.output).write_text(json.dumps(data))


def main() -> None:
    plan = Plan(**json.loads(Path(sys.argv[1]).read_text()))
    Driver(plan).run()


if __name__ == "__main__":
    main()
