"""``ext.health()``: one PING and INFO (on Cluster, INFO memory of every
primary too), reported as a dict, never raised."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from redis import Redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import RedisError

from ..config import Settings
from ..errors import describe_error
from .operations import Command, Operation, Step, arun, run


def failed_report(settings: Settings, error: str | None = None) -> dict[str, Any]:
    """The report of a check that has not succeeded (yet): ``ok`` false."""
    report: dict[str, Any] = {
        "ok": False, "mode": settings.mode, "address": settings.address,
        "latency_ms": None, "server_version": None, "role": None,
    }
    if error is not None:
        report["error"] = error
    return report


def check_health(get_client: Callable[[], Redis | RedisCluster],
                 settings: Settings) -> dict[str, Any]:
    """``ok``, ``mode``, ``latency_ms``, ``server_version``, ``role``, ``address``,
    and ``error`` when not ok. Redis being down is a result, not an exception.

    Outside memory mode it also has ``used_memory`` and ``maxmemory`` (on
    Cluster, of the primary nearest its ``maxmemory``, named by
    ``memory_node``), and ``warnings`` when used memory reaches
    ``MEMORY_WARNING_RATIO`` of a ``maxmemory`` that is set."""
    try:
        client = get_client()  # building a Cluster client already talks to it
    except (RedisError, OSError) as error:
        return failed_report(settings, describe_error(error))
    return run(health_operation(settings, isinstance(client, RedisCluster)), client)


async def acheck_health(client: Any, settings: Settings) -> dict[str, Any]:
    """:func:`check_health` with an asyncio ``client``."""
    return await arun(health_operation(settings, isinstance(client, AsyncRedisCluster)),
                      client)


def health_operation(settings: Settings, cluster: bool) -> Operation[dict[str, Any]]:
    """The check, as an operation for either client."""
    report = failed_report(settings)
    try:
        started = time.perf_counter()
        yield Command("PING")
        report["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        report.update((yield from _server_facts(settings, cluster)))
    except (RedisError, OSError) as error:
        report["error"] = describe_error(error)
        return report
    report["ok"] = True
    return report


class Primaries(Step):
    """A Cluster client's primaries, as its slot map knows them (no I/O)."""

    def run(self, client: Any) -> Any:
        """The blocking client's."""
        return client.get_primaries()

    async def arun(self, client: Any) -> Any:
        """The asyncio client's."""
        return client.get_primaries()


def _server_facts(settings: Settings, cluster: bool) -> Operation[dict[str, Any]]:
    if settings.mode == "memory":  # the embedded server has no INFO command
        from importlib.metadata import version

        return {"server_version": f"fakeredis {version('fakeredis')}", "role": "master"}
    if cluster:
        info = yield Command("INFO", "server", target_nodes=RedisCluster.RANDOM)
        state = yield Command("CLUSTER INFO", target_nodes=RedisCluster.RANDOM)
        memory = yield from _cluster_memory(settings.memory_warning_ratio)
        return {
            "server_version": _server_version(info),
            "role": "cluster",
            "cluster_state": state.get("cluster_state"),
            "cluster_known_nodes": int(state.get("cluster_known_nodes", 0)),
            "cluster_size": int(state.get("cluster_size", 0)),
            **memory,
        }
    info = yield Command("INFO")
    return {"server_version": _server_version(info), "role": info.get("role"),
            **_memory_facts(info.get("used_memory"), info.get("maxmemory"),
                            settings.memory_warning_ratio)}


def _cluster_memory(ratio: float) -> Operation[dict[str, Any]]:
    """The memory facts of the primary nearest its ``maxmemory`` (of the one
    using the most when none has a limit), read with one INFO per primary; a
    primary that does not answer is a warning, not a failed check."""
    readings: list[tuple[str, int, int]] = []
    unread: list[str] = []
    for node in (yield Primaries()):
        try:
            memory: Any = yield Command("INFO", "memory", target_nodes=node)
        except RedisError as error:
            unread.append(f"memory: {node.name} did not answer INFO: "
                          f"{describe_error(error)}")
            continue
        readings.append((node.name, int(memory.get("used_memory") or 0),
                         int(memory.get("maxmemory") or 0)))
    facts: dict[str, Any] = {}
    if readings:
        name, used, limit = max(readings, key=lambda reading: (
            reading[1] / reading[2] if reading[2] else -1.0, reading[1]))
        facts = _memory_facts(used, limit, ratio, name)
    if unread:
        facts["warnings"] = [*facts.get("warnings", []), *unread]
    return facts


def _memory_facts(used: int | None, limit: int | None, ratio: float,
                  node: str | None = None) -> dict[str, Any]:
    """``used_memory``, ``maxmemory`` (and ``memory_node``), with a warning when
    ``used`` reaches ``ratio`` of a limit that is set."""
    facts: dict[str, Any] = {"used_memory": used, "maxmemory": limit}
    if node is not None:
        facts["memory_node"] = node
    if limit and (used or 0) >= limit * ratio:
        where = f" on {node}" if node is not None else ""
        facts["warnings"] = [f"memory: {used} of {limit} bytes used{where} "
                             f"({(used or 0) / limit:.0%}, warning from {ratio:.0%})"]
    return facts


def _server_version(info: Mapping[str, Any]) -> str | None:
    """Redis's version as INFO gives it; a server that names itself otherwise,
    its name and own version: Valkey 8 says ``server_name:valkey`` and
    ``valkey_version:8.1.8``, and keeps ``redis_version:7.2.4`` for old clients."""
    name = info.get("server_name")
    if name and name != "redis" and f"{name}_version" in info:
        return f"{name} {info[f'{name}_version']}"
    version = info.get("redis_version")
    return None if version is None else str(version)
