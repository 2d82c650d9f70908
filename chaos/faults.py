"""The faults, each in two steps: ``inject`` runs while the load goes on and
returns once the fault is over from the run's side (the server is back, the
pause ended, a new master serves); ``heal`` then puts the deployment back as
it was (a killed node restarted, rejoining as a replica), outside the
measured windows."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.servers import RedisProcess, wait_until

from .topologies import Cluster, Sentinel, Topology

PAUSE_SECONDS = 3.0
LATENCY_SECONDS = 0.25
LATENCY_FOR_SECONDS = 3.0
#: How long a killed standalone server stays down before it is started again
#: (a supervisor's restart).
STANDALONE_DOWN_SECONDS = 2.0


@dataclass
class Fault:
    name: str
    what: str
    inject: Callable[[Topology], None]
    heal: Callable[[Topology], None] = lambda topology: topology.wait_whole()


def start_again(process: RedisProcess) -> None:
    """Start a stopped node as it last was: a Sentinel data node comes up as a
    master and the sentinels make it a replica if it is not theirs (its
    first start's --replicaof would make the master a replica of a replica);
    a Cluster node finds its role in its nodes.conf."""
    if "--replicaof" in process.args:
        at = process.args.index("--replicaof")
        del process.args[at:at + 3]
    process.start()


def restart(topology: Topology) -> None:
    """SIGTERM to the master (it writes its AOF and exits), then start it."""
    target = topology.target()
    target.stop()
    start_again(target)


def kill(topology: Topology) -> None:
    """SIGKILL to the master; a standalone server is started again after
    STANDALONE_DOWN_SECONDS, elsewhere the run waits for the promotion."""
    target = topology.target()
    target.kill()
    if isinstance(topology, Sentinel | Cluster):
        wait_until(lambda: _new_master_serves(topology, target), 60, "a promotion",
                   interval=0.1)
    else:
        time.sleep(STANDALONE_DOWN_SECONDS)
        start_again(target)


def _new_master_serves(topology: Topology, old: object) -> bool:
    try:
        return topology.target() is not old
    except Exception:  # mid-failover, the deployment may not answer yet
        return False


def restart_killed(topology: Topology) -> None:
    """Start every node that is down (it rejoins as a replica), then wait."""
    for process in topology.deployment.processes:
        if process.process is not None and process.process.poll() is not None:
            start_again(process)
    topology.wait_whole()


def pause(topology: Topology) -> None:
    """SIGSTOP the master for PAUSE_SECONDS, then SIGCONT: a hung server, not
    a dead one (Sentinel and Cluster may fail it over meanwhile)."""
    target = topology.target()
    target.signal(signal.SIGSTOP)
    time.sleep(PAUSE_SECONDS)
    target.signal(signal.SIGCONT)


def latency(topology: Topology) -> None:
    """Every reply of every data node held LATENCY_SECONDS by its proxy, for
    LATENCY_FOR_SECONDS."""
    for proxy in topology.proxies.values():
        proxy.latency = LATENCY_SECONDS
    time.sleep(LATENCY_FOR_SECONDS)
    for proxy in topology.proxies.values():
        proxy.latency = 0.0


def drop(topology: Topology) -> None:
    """Every connection to every data node cut at once, by the proxies."""
    for proxy in topology.proxies.values():
        proxy.drop_connections()


def sentinel_failover(topology: Topology) -> None:
    """SENTINEL FAILOVER: a planned switch of master, mid-load."""
    assert isinstance(topology, Sentinel)
    old = topology.target()
    with topology.sentinel.sentinels[0].client() as client:
        client.execute_command("SENTINEL FAILOVER", topology.sentinel.master_name)
    wait_until(lambda: _new_master_serves(topology, old), 60, "the failover", interval=0.1)


def cluster_failover(topology: Topology) -> None:
    """CLUSTER FAILOVER on the target's replica: a planned switch, mid-load."""
    assert isinstance(topology, Cluster)
    old, replica = topology.target(), topology.replica_of_target()
    with replica.client() as client:
        client.execute_command("CLUSTER FAILOVER")
    wait_until(lambda: _new_master_serves(topology, old), 60, "the failover", interval=0.1)


RESTART = Fault("restart", "SIGTERM to the master, started again at once", restart)
KILL = Fault("master killed", "SIGKILL to the master", kill, restart_killed)
PAUSE = Fault("paused 3 s", "SIGSTOP to the master, SIGCONT 3 s later", pause)
LATENCY = Fault("latency 250 ms", "every reply held 250 ms by the proxies, for 3 s", latency)
DROP = Fault("connections dropped", "the proxies cut every connection at once", drop)
SENTINEL_FAILOVER = Fault("SENTINEL FAILOVER", "a failover asked of the sentinels",
                          sentinel_failover)
CLUSTER_FAILOVER = Fault("CLUSTER FAILOVER", "a failover asked of the target's replica",
                         cluster_failover)
