"""``ext.health()`` on Cluster: the memory of every primary, and a warning
naming the one that reaches ``MEMORY_WARNING_RATIO`` of its ``maxmemory``."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.exceptions import ConnectionError

from flask_core_redis.connection.health import _cluster_memory
from flask_core_redis.connection.operations import run

from .servers import LOOPBACK, ClusterDeployment, RedisProcess


@pytest.fixture
def limited_primary(cluster: ClusterDeployment) -> Iterator[RedisProcess]:
    """One primary with a maxmemory four times what it uses (no write nears
    it), reset to no limit after the test."""
    primary = cluster.master_of("health:limited")
    with primary.client() as admin:
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used * 4)
    try:
        yield primary
    finally:
        with primary.client() as admin:
            admin.config_set("maxmemory", 0)


@pytest.mark.integration
def test_cluster_health_reads_no_warning_without_a_maxmemory(make_app, cluster):
    app, ext = make_app({"REDIS_URL": cluster.url, "REDIS_MEMORY_WARNING_RATIO": 0.01})
    with app.app_context():
        report = ext.health()
    assert report["ok"] is True
    assert report["maxmemory"] == 0 and report["used_memory"] > 0
    assert "warnings" not in report


@pytest.mark.integration
def test_cluster_health_warns_on_the_primary_nearest_its_maxmemory(make_app, cluster,
                                                                   limited_primary):
    app, ext = make_app({"REDIS_URL": cluster.url, "REDIS_MEMORY_WARNING_RATIO": 0.2})
    with app.app_context():
        report = ext.health()
    node = f"{LOOPBACK}:{limited_primary.front_port}"
    assert report["ok"] is True
    assert report["memory_node"] == node
    assert report["maxmemory"] > report["used_memory"] > 0
    [warning] = report["warnings"]
    assert warning.startswith("memory: ") and f" bytes used on {node} " in warning
    assert "warning from 20%" in warning


@pytest.mark.integration
def test_cluster_health_stays_quiet_below_the_ratio(make_app, cluster, limited_primary):
    app, ext = make_app({"REDIS_URL": cluster.url, "REDIS_MEMORY_WARNING_RATIO": 0.9})
    with app.app_context():
        report = ext.health()
    assert report["ok"] is True
    assert report["memory_node"] == f"{LOOPBACK}:{limited_primary.front_port}"
    assert "warnings" not in report


@dataclass
class Primary:
    name: str
    used_memory: int
    maxmemory: int
    answers: bool = True


class Primaries:
    """What the memory reading asks of a RedisCluster: its primaries and one
    INFO memory per node."""

    def __init__(self, *primaries: Primary) -> None:
        self.primaries = primaries

    def get_primaries(self) -> tuple[Primary, ...]:
        return self.primaries

    def execute_command(self, *args: str, target_nodes: Primary) -> dict[str, Any]:
        assert args == ("INFO", "memory")
        if not target_nodes.answers:
            raise ConnectionError("Connection refused")
        return {"used_memory": target_nodes.used_memory, "maxmemory": target_nodes.maxmemory}


def test_the_fullest_primary_is_the_one_nearest_its_limit_not_the_biggest():
    facts = run(_cluster_memory(0.8), Primaries(
        Primary("10.0.0.1:6379", 900, 10_000), Primary("10.0.0.2:6379", 500, 600),
        Primary("10.0.0.3:6379", 5_000, 0)))
    assert (facts["memory_node"], facts["used_memory"], facts["maxmemory"]) == (
        "10.0.0.2:6379", 500, 600)
    assert facts["warnings"] == ["memory: 500 of 600 bytes used on 10.0.0.2:6379 "
                                 "(83%, warning from 80%)"]


def test_a_primary_that_does_not_answer_is_a_warning_not_a_failure():
    facts = run(_cluster_memory(0.5), Primaries(
        Primary("10.0.0.1:6379", 900, 1000), Primary("10.0.0.2:6379", 0, 0, answers=False)))
    assert facts["memory_node"] == "10.0.0.1:6379"
    assert facts["warnings"][0].startswith("memory: 900 of 1000 bytes used on 10.0.0.1")
    assert facts["warnings"][1] == ("memory: 10.0.0.2:6379 did not answer INFO: "
                                    "ConnectionError: Connection refused")
