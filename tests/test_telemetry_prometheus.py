"""The Observability page's Prometheus recipe, run as written, serves every
series its dashboard queries read after real traffic; and the page lists
every instrument the extension makes, with its unit."""

from __future__ import annotations

import importlib.util
import re
import signal
import threading
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flask_core_redis.telemetry import NAMESPACE, instruments

from .examples import ROOT, blocks_of
from .test_examples import run_block

PAGE = ROOT / "docs" / "observability.md"

pytestmark = pytest.mark.integration


def recipe() -> dict[str, Any]:
    """The namespace the page's Prometheus block leaves: ``app``, ``redis_ext``."""
    block, = [block for block in blocks_of(PAGE) if "PrometheusMetricReader" in block.code]
    namespace: dict[str, Any] = {"__name__": "__example__"}
    run_block(block, namespace)
    return namespace


def samples(app: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    """What ``/metrics`` serves now: each sample's labels and value, by name."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found: dict[str, Any], name: str, **labels: str) -> float:
    return sum(number for got, number in found.get(name, [])
               if all(got.get(key) == wanted for key, wanted in labels.items()))


def test_the_recipe_serves_what_the_dashboard_queries_read(monkeypatch, own_redis_server):
    monkeypatch.setenv("REDIS_URL", f"redis://{own_redis_server.address}")
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "200")
    monkeypatch.setenv("REDIS_CACHE_LOCAL_ENTRIES", "100")
    monkeypatch.setenv("REDIS_MAX_CONNECTIONS", "10")
    monkeypatch.setenv("REDIS_POOL_TIMEOUT", "1000")
    namespace = recipe()
    app, redis_ext = namespace["app"], namespace["redis_ext"]
    key = uuid.uuid4().hex
    try:
        with app.app_context():
            cache = redis_ext.cache
            cache.set(key, "value")
            for _ in range(3):
                cache.get(key)
            cache.get("absent")
            # A server that hangs a moment: one command recovers by a retry.
            own_redis_server.signal(signal.SIGSTOP)
            threading.Timer(0.3, own_redis_server.signal, [signal.SIGCONT]).start()
            redis_ext.client.ping()
            found = samples(app)
    finally:
        with app.app_context():
            redis_ext.close()
    # The hit ratio: requests by result, and the near cache's local hits.
    requests = "flask_core_redis_cache_requests_total"
    hits, misses = (value(found, requests, result=result) for result in ("hit", "miss"))
    local = value(found, "flask_core_redis_cache_local_hits_total")
    assert misses >= 1 and hits + local == 3
    # Pool saturation: connections in use and idle, by client kind.
    pools = "flask_core_redis_connection_pool_connections"
    assert value(found, pools, client="shared", state="idle") >= 1
    assert {"used", "idle"} <= {labels["state"] for labels, _ in found[pools]}
    # Retries in the last minute, by outcome.
    assert value(found, "flask_core_redis_connection_retries_total", outcome="recovered") >= 1
    # redis-py's own (7.2 and later), by default: with a blocking pool
    # (POOL_TIMEOUT) the waits for a free connection; not each command's
    # duration, which costs every command (OTEL_REDIS_PY_METRICS).
    if importlib.util.find_spec("redis.observability") is not None:
        assert value(found, "db_client_connection_wait_time_seconds_count") >= 5
        assert "db_client_operation_duration_seconds_count" not in found


def documented() -> dict[str, str]:
    """Each instrument the page's tables list, with its unit."""
    rows = re.findall(r"^\| `([a-z_.]+)` \| [a-z ]+ \| `([^`]+)` \|", PAGE.read_text(), re.M)
    return {f"{NAMESPACE}.{name}": unit for name, unit in rows}


def test_every_instrument_is_documented_with_its_unit(otel, make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_OTEL": True, "REDIS_CACHE_LOCAL_ENTRIES": 10})
    with app.app_context():
        ext.cache.get("warm")  # the near cache's instruments come with its tracking
        ext.health()
    made = {name: instrument for (kind, name), instrument in instruments._made.items()
            if kind != "tracer"}
    made.update({name: None for name in instruments._observed})
    listed = documented()
    assert set(made) == set(listed)
    for name, instrument in made.items():
        unit = getattr(getattr(instrument, "_real_instrument", instrument), "unit", None)
        if unit is not None:
            assert unit == listed[name], name
