"""Real ``redis-server`` processes for the integration tests: standalone, TLS,
ACL, Sentinel and Cluster, each on free loopback ports and in its own folder.

Nothing here touches a server it did not start."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() == "true"
LOOPBACK = "127.0.0.1"
_handed_out: set[int] = set()


def require_binary(name: str) -> str:
    """The path of ``name``; a missing one skips locally and fails under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install redis-server)"
        if IN_CI:
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)
    return path


def require_package(name: str) -> Any:
    """Module ``name``, imported; a missing one skips locally and fails under
    CI=true (it comes with the test extra: pip install -e '.[test]')."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"{name} is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message, allow_module_level=True)


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(*, cluster: bool = False) -> int:
    """A loopback port nobody listens on; for a cluster node, port + 10000 too."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        if port in _handed_out or port == 6379:
            continue
        if cluster and (port > 55535 or not _port_is_free(port + 10000)):
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")


def wait_until(condition: Callable[[], T], timeout: float, what: str,
               interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except (redis.RedisError, OSError) as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


class RedisProcess:
    """One redis-server (or sentinel) process that this test session owns."""

    def __init__(self, workdir: Path, port: int, args: Iterable[str] = (),
                 *, sentinel: bool = False, client_kwargs: dict[str, Any] | None = None,
                 ) -> None:
        self.binary = require_binary("redis-server")
        self.port = port
        self.workdir = workdir / f"{'sentinel' if sentinel else 'redis'}-{port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.sentinel = sentinel
        self.client_kwargs = {"host": LOOPBACK, "port": port, "socket_timeout": 5,
                              "decode_responses": True, **(client_kwargs or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def _command(self) -> list[str]:
        if self.sentinel:
            config = self.workdir / "sentinel.conf"
            lines = [f"port {self.port}", f"bind {LOOPBACK}", f"dir {self.workdir}",
                     f"logfile {self.log_path}", *self.args]
            if not config.exists():  # a restarted sentinel keeps what it learnt
                config.write_text("\n".join(lines) + "\n")
            return [self.binary, str(config), "--sentinel"]
        return [self.binary, "--port", str(self.port), "--bind", LOOPBACK,
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                "--repl-diskless-sync-delay", "0",
                "--logfile", str(self.log_path), *self.args]

    def start(self) -> RedisProcess:
        self.process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_until(self._answers, 15, f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"redis-server on port {self.port} exited:\n"
                                 + self.log_tail())
        with self.client() as client:
            return bool(client.ping())

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def client(self, **overrides: Any) -> redis.Redis:
        return redis.Redis(**{**self.client_kwargs, **overrides})

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """Die at once, as a crashed server does."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Deployment:
    """A group of processes started and stopped together."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[RedisProcess] = []

    def add(self, process: RedisProcess) -> RedisProcess:
        self.processes.append(process)
        return process.start()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


class SentinelDeployment(Deployment):
    """One master, one replica and three sentinels watching them."""

    master_name = "mymaster"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.master = self.add(RedisProcess(workdir, free_port()))
        self.replica = self.add(RedisProcess(
            workdir, free_port(), ["--replicaof", LOOPBACK, str(self.master.port)]))
        monitor = [f"sentinel monitor {self.master_name} {LOOPBACK} {self.master.port} 2",
                   f"sentinel down-after-milliseconds {self.master_name} 1000",
                   f"sentinel failover-timeout {self.master_name} 5000",
                   f"sentinel parallel-syncs {self.master_name} 1"]
        self.sentinels = [self.add(RedisProcess(workdir, free_port(), monitor, sentinel=True))
                          for _ in range(3)]
        wait_until(self._settled, 30, "sentinels to see each other and the replica")

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(self.master_name)
                if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                    return False
        with self.replica.client() as client:
            return client.info("replication")["master_link_status"] == "up"

    @property
    def url(self) -> str:
        hosts = ",".join(s.address for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master_name}"

    def master_port(self) -> int:
        with self.sentinels[0].client() as client:
            _, port = client.sentinel_get_master_addr_by_name(self.master_name)
        return int(port)

    def process_on(self, port: int) -> RedisProcess:
        return next(p for p in (self.master, self.replica) if p.port == port)


class ClusterDeployment(Deployment):
    """Six nodes: three masters with one replica each."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.nodes = [self.add(RedisProcess(workdir, port, [
            "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", "1000",
            # Fail over even if the replica lost its master a while ago.
            "--cluster-replica-validity-factor", "0"])) for port in
            (free_port(cluster=True) for _ in range(6))]
        subprocess.run(
            [require_binary("redis-cli"), "--cluster", "create",
             *(node.address for node in self.nodes), "--cluster-replicas", "1",
             "--cluster-yes"], check=True, capture_output=True, timeout=60)
        wait_until(self.healthy, 30, "the cluster to report cluster_state:ok")

    def healthy(self) -> bool:
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with node.client() as client:
                raw = client.execute_command("CLUSTER INFO")
                info = raw if isinstance(raw, dict) else dict(
                    line.split(":", 1) for line in raw.splitlines() if ":" in line)
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) < 6:
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication[
                        "master_link_status"] != "up":
                    return False
        return True

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[:3])

    def master_of(self, key: str) -> RedisProcess:
        """The process that currently serves ``key``'s slot."""
        alive = next(n for n in self.nodes if n.process and n.process.poll() is None)
        with alive.client() as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no master serves slot of {key!r}")


@contextlib.contextmanager
def refusing_default_port() -> Iterator[list[Any]]:
    """Refuse, inside this process, every connection attempt to port 6379
    before it leaves the process; yield the list of the attempts."""
    attempts: list[Any] = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and len(address) >= 2 and address[1] == 6379:
            attempts.append(address)
            raise ConnectionRefusedError("the tests never connect to port 6379")
        connect(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded)
        yield attempts


def run_forked(check: Callable[[], bool]) -> bool:
    """Run ``check`` in a forked child, as a pre-forking server's worker would,
    and return its verdict. The child always exits, whatever happens."""
    pid = os.fork()
    if pid == 0:
        verdict = False
        try:
            verdict = bool(check())
        finally:
            os._exit(0 if verdict else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def run_concurrently(*calls: Callable[[], T]) -> list[T]:
    """Start every call in its own thread at the same instant (a barrier);
    return their results in order, or raise the first error."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        start.wait()
        try:
            results[index] = call()
        except BaseException as error:  # handed back to the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
