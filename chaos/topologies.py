"""The servers one run of the fault injection starts, on free loopback ports:
one server, Sentinel (1 master, 1 replica, 3 sentinels) and a Cluster of 3
masters with a replica each. Every data node sits behind a FaultProxy and
announces the proxy's port, so clients, replicas and sentinels all reach it
through the proxy, and a network fault there reaches everyone. Data nodes
keep an append-only file (fsync every second), as a production server would,
so a restart keeps what was written. Cluster nodes serve their slots while
another master's are uncovered (``cluster-require-full-coverage no``; Redis's
default stops every master then)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from tests.servers import (
    LOOPBACK,
    ClusterDeployment,
    Deployment,
    RedisProcess,
    SentinelDeployment,
    wait_until,
)
from tests.tcp_proxy import FaultProxy

PERSISTENCE = ["--appendonly", "yes", "--appendfsync", "everysec"]
PARTIAL_COVERAGE = ["--cluster-require-full-coverage", "no"]


class Topology:
    """A deployment behind proxies, the URL the app is given, and what the
    faults need: the node to hit, the proxies, a check that it is whole."""

    name: str
    url: str
    deployment: Deployment

    def __init__(self) -> None:
        self.proxies: dict[int, FaultProxy] = {}

    def front(self, port: int) -> int:
        """A proxy in front of ``port``; the port to reach it at."""
        proxy = FaultProxy(port)
        self.proxies[port] = proxy
        return proxy.port

    def target(self) -> RedisProcess:
        """The master the faults hit (in Cluster, the one serving slot 0)."""
        raise NotImplementedError

    def replica_of_target(self) -> RedisProcess | None:
        return None

    def whole(self) -> bool:
        """Every node up, replicating, and agreed on who is master."""
        raise NotImplementedError

    def wait_whole(self, timeout: float = 60) -> None:
        wait_until(self.whole, timeout, f"the {self.name} deployment to be whole again",
                   interval=0.2)

    def masters(self) -> list[redis.Redis]:
        """Clients of the masters, on their own ports (no proxy)."""
        raise NotImplementedError

    def keys_and_values(self) -> Iterator[tuple[str, list[str]]]:
        """Every key of every master with its values as text."""
        for client in self.masters():
            for key in client.scan_iter(count=1000):
                yield key, _values(client, key)

    def stop(self) -> None:
        self.deployment.stop()
        for proxy in self.proxies.values():
            proxy.close()


def _values(client: Any, key: str) -> list[str]:
    kind = client.type(key)
    readers: dict[str, Any] = {
        "string": lambda: [client.get(key)],
        "hash": lambda: [item for pair in client.hgetall(key).items() for item in pair],
        "list": lambda: client.lrange(key, 0, -1),
        "set": lambda: list(client.smembers(key)),
        "zset": lambda: [member for member, _ in client.zrange(key, 0, -1, withscores=True)],
        "stream": lambda: [str(entry) for entry in client.xrange(key)],
    }
    return [str(value) for value in readers.get(kind, list)() if value is not None]


def _client(process: RedisProcess) -> redis.Redis:
    return redis.Redis(host=LOOPBACK, port=process.port, decode_responses=True,
                       encoding_errors="replace", socket_timeout=5)


def _role(process: RedisProcess) -> dict[str, Any]:
    with _client(process) as client:
        return dict(client.info("replication"))


class Standalone(Topology):
    name = "standalone"

    def __init__(self, workdir: Path, server_args: list[str]) -> None:
        super().__init__()
        self.deployment = Deployment(workdir, self.front)
        self.server = self.deployment.add(self.deployment.data_node(
            [*PERSISTENCE, *server_args], lambda front, port: []))
        self.url = f"redis://{LOOPBACK}:{self.server.front_port}/0"

    def target(self) -> RedisProcess:
        return self.server

    def whole(self) -> bool:
        try:
            with _client(self.server) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def masters(self) -> list[redis.Redis]:
        return [_client(self.server)]


class Sentinel(Topology):
    name = "sentinel"

    def __init__(self, workdir: Path, server_args: list[str]) -> None:
        super().__init__()
        self.sentinel = SentinelDeployment(workdir, front=self.front,
                                           data_args=[*PERSISTENCE, *server_args])
        self.deployment = self.sentinel
        self.url = self.sentinel.url

    def nodes(self) -> list[RedisProcess]:
        return [self.sentinel.master, self.sentinel.replica]

    def target(self) -> RedisProcess:
        return self.sentinel.process_on(self.sentinel.master_port())

    def replica_of_target(self) -> RedisProcess:
        target = self.target()
        return next(node for node in self.nodes() if node is not target)

    def whole(self) -> bool:
        try:
            ports = set()
            for sentinel in self.sentinel.sentinels:
                with sentinel.client() as client:
                    ports.add(int(client.execute_command(
                        "SENTINEL GET-MASTER-ADDR-BY-NAME", self.sentinel.master_name)[1]))
            if len(ports) != 1:
                return False
            master = self.sentinel.process_on(ports.pop())
            replica = next(node for node in self.nodes() if node is not master)
            return (_role(master)["role"] == "master"
                    and _role(replica).get("master_link_status") == "up"
                    and _role(replica).get("master_port") == master.front_port)
        except (redis.RedisError, OSError, StopIteration):
            return False

    def masters(self) -> list[redis.Redis]:
        return [_client(self.target())]


class Cluster(Topology):
    name = "cluster"

    def __init__(self, workdir: Path, server_args: list[str]) -> None:
        super().__init__()
        self.cluster = ClusterDeployment(
            workdir, front=self.front, data_args=[*PERSISTENCE, *PARTIAL_COVERAGE, *server_args])
        self.deployment = self.cluster
        self.url = self.cluster.url
        self.slot0_key = next(f"k{n}" for n in range(10_000)
                              if redis.crc.key_slot(f"k{n}".encode()) == 0)

    def target(self) -> RedisProcess:
        return self.cluster.master_of(self.slot0_key)

    def replica_of_target(self) -> RedisProcess:
        target = self.target()
        return next(node for node in self.cluster.nodes
                    if _alive(node) and _role(node).get("master_port") == target.front_port)

    def healthy_tag(self) -> str:
        """A hash tag whose slot another master than the target serves."""
        target = self.target()
        return next(f"w{n}" for n in range(10_000)
                    if self.cluster.master_of(f"{{w{n}}}") is not target)

    def whole(self) -> bool:
        try:
            return all(_alive(node) for node in self.cluster.nodes) and self.cluster.healthy()
        except (redis.RedisError, OSError):
            return False

    def masters(self) -> list[redis.Redis]:
        return [_client(node) for node in self.cluster.nodes
                if _alive(node) and _role(node)["role"] == "master"]


def _alive(process: RedisProcess) -> bool:
    return process.process is not None and process.process.poll() is None


TOPOLOGIES = {"standalone": Standalone, "sentinel": Sentinel, "cluster": Cluster}


def start(name: str, workdir: Path, server_args: list[str]) -> Topology:
    """``name``'s servers, with ``server_args`` for every data node."""
    topology = TOPOLOGIES[name](workdir / name, server_args)
    topology.wait_whole()
    return topology
