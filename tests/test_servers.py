"""The servers the integration tests start are the ones the run is for: Redis,
or Valkey 8 with FLASK_CORE_REDIS_TEST_SERVER=valkey, on every topology, TLS
included."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import (
    PORTS_VARIABLE,
    SERVER,
    SERVERS,
    SHARED_PORTS,
    RedisProcess,
    chosen_port_parity,
    free_port,
    server_name,
)

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


def running(process):
    with process.client() as client:
        info = client.info("server")
    return server_name(info), info.get("valkey_version", info["redis_version"])


def test_every_topology_runs_the_chosen_server(redis_server, auth_server, sentinel, cluster):
    processes = [redis_server, auth_server, sentinel.master, sentinel.replica,
                 *sentinel.sentinels, *cluster.nodes]
    seen = {running(process) for process in processes}
    assert {name for name, _ in seen} == {SERVER}
    expected_major = "8" if SERVER == "valkey" else "7"
    assert {version.split(".")[0] for _, version in seen} == {expected_major}


def test_tls_runs_the_chosen_server_too(tls_server, tls_sentinel, tls_cluster):
    processes = [tls_server, tls_sentinel.master, *tls_sentinel.sentinels, *tls_cluster.nodes]
    assert {running(process)[0] for process in processes} == {SERVER}
    with tls_server.client() as client:
        assert client.config_get("tls-port")["tls-port"] == str(tls_server.port)


def test_a_server_that_is_not_the_chosen_one_fails_the_test(tmp_path):
    """A run that says it is on one server and starts the other fails, and
    leaves no process behind."""
    process = RedisProcess(tmp_path, free_port())
    claimed = next(name for name in SERVERS if name != process.server)
    process.server = claimed
    with pytest.raises(AssertionError, match=f"is {SERVER}, but this run is on {claimed}"):
        process.start()
    assert process.process is not None and process.process.poll() is not None


@pytest.mark.parametrize("parity", ["even", "odd"])
def test_two_sessions_side_by_side_take_ports_of_their_own_parity(parity):
    """scripts/test runs two passes at once, one on even ports, the other on
    odd ones below the kernel's ephemeral range: neither can take a port the
    other probed but has not yet started a server on. The parity holds after
    the variable is gone, as it is once the session's isolation has removed
    every *REDIS* variable."""
    script = "\n".join([
        "import os",
        "from tests.servers import PORTS_VARIABLE, free_port",
        "del os.environ[PORTS_VARIABLE]",
        "print(*[free_port() for _ in range(50)], *[free_port(cluster=True) for _ in range(5)])"])
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            env={**os.environ, PORTS_VARIABLE: parity}, text=True,
                            timeout=60, check=True)
    ports = [int(port) for port in result.stdout.split()]
    assert len(ports) == 55 and all(port in SHARED_PORTS for port in ports)
    assert {port % 2 for port in ports} == {0 if parity == "even" else 1}


def test_a_port_parity_of_another_kind_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(PORTS_VARIABLE, "3")
    with pytest.raises(pytest.UsageError, match=r"FLASK_CORE_REDIS_TEST_PORTS='3'.*even, odd"):
        chosen_port_parity()
