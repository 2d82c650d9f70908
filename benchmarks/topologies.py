"""The deployments one run measures, each with its app, its extension, a raw
redis-py client on the same data, and the masters to read server time from:

- ``memory``: ``REDIS_URL="memory://..."``, fakeredis in this process (no
  server, so no server time);
- ``standalone``: one redis-server;
- ``cluster``: three masters and three replicas (tests.servers.ClusterDeployment).

The client (this process) runs on CPU 0 and every redis-server on CPU 1, when
the machine has both and ``taskset`` is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from redis.cluster import RedisCluster

from flask_core_redis import CoreRedis
from tests.servers import ClusterDeployment, RedisProcess, free_port

from .measure import ServerClock

CLIENT_CPU, SERVER_CPU = 0, 1


@dataclass
class Pinning:
    active: bool
    description: str


PINNING = Pinning(False, "not decided yet")


def pin_client() -> Pinning:
    """Pin this process to CPU 0 if the servers can go to CPU 1 (servers
    started afterwards inherit CPU 0 until :func:`pin_server` moves them)."""
    PINNING.active, PINNING.description = _pin_client()
    return PINNING


def _pin_client() -> tuple[bool, str]:
    if not hasattr(os, "sched_setaffinity"):
        return False, "not pinned: this OS has no sched_setaffinity"
    available = os.sched_getaffinity(0)
    if not {CLIENT_CPU, SERVER_CPU} <= available:
        return False, (f"not pinned: needs CPUs 0 and 1, this process may use "
                       f"{sorted(available)} ({os.cpu_count()} CPUs); client and servers "
                       "share the CPU(s)")
    if shutil.which("taskset") is None:
        return False, ("not pinned: taskset is missing (apt-get install util-linux); "
                       "client and servers share both CPUs")
    os.sched_setaffinity(0, {CLIENT_CPU})
    return True, (f"client pinned to CPU {CLIENT_CPU} (os.sched_setaffinity), every "
                  f"redis-server to CPU {SERVER_CPU} (taskset -a -pc {SERVER_CPU}, "
                  "checked per thread)")


def pin_server(process: RedisProcess) -> None:
    """Move every thread of a started redis-server to the server CPU."""
    if not PINNING.active or process.process is None:
        return
    pid = process.process.pid
    subprocess.run(["taskset", "-a", "-pc", str(SERVER_CPU), str(pid)], check=True,
                   capture_output=True, timeout=10)
    for task in Path(f"/proc/{pid}/task").iterdir():
        affinity = os.sched_getaffinity(int(task.name))
        if affinity != {SERVER_CPU}:
            raise RuntimeError(f"redis-server {pid} thread {task.name} still on {affinity}")


class PinnedCluster(ClusterDeployment):
    """ClusterDeployment with each node pinned as soon as it has started, and
    listed in ``started`` first, so that a failed start still stops them all."""

    def __init__(self, workdir: Path, started: list[RedisProcess]) -> None:
        self.started = started
        super().__init__(workdir)

    def add(self, process: RedisProcess) -> RedisProcess:
        self.started.append(process)
        started = super().add(process)
        pin_server(started)
        return started


@dataclass
class Topology:
    name: str
    app: Flask
    ext: CoreRedis
    raw: Any  # redis.Redis, RedisCluster or FakeRedis, decode_responses=True
    masters: list[redis.Redis] = field(default_factory=list)
    flask_caching: Callable[[], Any] | None = None  # a Flask-Caching backend, same data
    port: int | None = None  # standalone only

    @property
    def clock(self) -> ServerClock | None:
        return ServerClock(self.masters) if self.masters else None

    @property
    def threads(self) -> int:
        """Threads for filling: a real server overlaps the round trips;
        fakeredis holds the GIL for the whole call."""
        return 6 if self.masters else 1

    def flush(self) -> None:
        for client in self.masters or [self.raw]:
            client.flushall()

    def used_memory(self) -> int:
        return sum(int(m.info("memory")["used_memory"]) for m in self.masters)


def make_app(name: str, url: str) -> tuple[Flask, CoreRedis]:
    app = Flask(f"bench-{name}")
    app.config.update(SECRET_KEY="bench-secret-key-" + "x" * 32, REDIS_URL=url,
                      REDIS_OTP_RESEND_COOLDOWN=0, REDIS_OTP_MAX_SENDS=10,
                      REDIS_PRESENCE_MAX_CONNECTIONS=2000)
    return app, CoreRedis(app)


@contextmanager
def memory_topology() -> Iterator[Topology]:
    app, ext = make_app("memory", "memory://bench")
    with app.app_context():
        raw = ext.client  # the fakeredis client itself: no server to reach otherwise
    try:
        yield Topology("memory", app, ext, raw)
    finally:
        with app.app_context():
            ext.close()


@contextmanager
def standalone_topology(workdir: Path) -> Iterator[Topology]:
    from flask_caching.backends.rediscache import RedisCache

    server = RedisProcess(workdir, free_port())
    clients: list[Any] = []
    try:
        server.start()
        pin_server(server)
        app, ext = make_app("standalone", f"redis://127.0.0.1:{server.port}")
        raw = redis.Redis(port=server.port, decode_responses=True)
        master = server.client()
        clients += [raw, master]
        yield Topology("standalone", app, ext, raw, [master],
                       lambda: RedisCache(host="127.0.0.1", port=server.port,
                                          key_prefix="fc:"), server.port)
        with app.app_context():
            ext.close()
    finally:
        for client in clients:
            client.close()
        server.stop()


@contextmanager
def cluster_topology(workdir: Path) -> Iterator[Topology]:
    from flask_caching.backends.rediscache import RedisClusterCache

    started: list[RedisProcess] = []
    clients: list[Any] = []
    try:
        deployment = PinnedCluster(workdir, started)
        masters = []
        for node in deployment.nodes:
            client = node.client()
            clients.append(client)
            if client.info("replication")["role"] == "master":
                masters.append(client)
        addresses = [f"127.0.0.1:{m.get_connection_kwargs()['port']}" for m in masters]
        app, ext = make_app("cluster", deployment.url)
        first = deployment.nodes[0]
        raw = RedisCluster(host="127.0.0.1", port=first.port, decode_responses=True)
        clients.append(raw)
        yield Topology("cluster", app, ext, raw, masters,
                       lambda: RedisClusterCache(cluster=",".join(addresses),
                                                 key_prefix="fc:"))
        with app.app_context():
            ext.close()
    finally:
        for client in clients:
            client.close()
        for process in started:
            process.stop()


def describe_masters(top: Topology) -> str:
    ports = [str(m.get_connection_kwargs()["port"]) for m in top.masters]
    return ", ".join(ports) if ports else "none (in-process)"


def server_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "redis-server missing"
    text = subprocess.run([binary, "--version"], capture_output=True, text=True,
                          timeout=10).stdout
    version = next((part[2:] for part in text.split() if part.startswith("v=")), text.strip())
    return f"redis-server {version}"
