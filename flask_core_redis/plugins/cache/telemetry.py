"""The cache's instruments and spans (``flask_core_redis.cache.*``). Each
carries a ``namespace`` attribute: the namespace's name where the app
declared it in ``CACHE_OTEL_NAMESPACES`` (``default`` always is), else
``other``. No key and no value is ever recorded."""

from __future__ import annotations

import weakref
from collections.abc import Collection
from typing import Any

from ...plugin_api import PluginContext, TelemetryAttributes
from .decorator import DEFAULT_NAMESPACE
from .near import NearCache

RESULTS = ("hit", "miss")


class CacheTelemetry:
    """The instruments one app's cache records with, and its spans."""

    def __init__(self, context: PluginContext, namespaces: Collection[str]) -> None:
        telemetry = context.telemetry
        self.on = telemetry.on
        namespace = {"namespace": frozenset((*namespaces, DEFAULT_NAMESPACE))}
        self.requests = telemetry.counter(
            "cache.requests", "{request}", "Keys read from Redis by get, get_many and "
            "get_or_set, by result: hit or miss (near-cache hits count in "
            "cache.local.hits; reads answered without Redis in cache.fail_open)",
            {"result": RESULTS, **namespace})
        self.fail_open = telemetry.counter(
            "cache.fail_open", "{call}", "Calls answered without Redis (an outage, or the "
            "breaker open): reads missed, writes skipped")
        self.waits = telemetry.histogram(
            "cache.single_flight.wait.duration", "s", "How long get_or_set callers waited "
            "for another caller's computation (its count: the waits)", namespace)
        self.recomputations = telemetry.counter(
            "cache.recomputations", "{computation}", "Values get_or_set computed: for a "
            "missing entry, for one refreshed early, or without Redis",
            {"reason": ("missing", "early", "fail_open"), **namespace})
        self.invalidations = telemetry.counter(
            "cache.invalidations", "{invalidation}", "Deletions of one entry and "
            "invalidations of a namespace", {"scope": ("key", "namespace"), **namespace})
        span_attributes: TelemetryAttributes = {"result": RESULTS, "computed": bool, **namespace}
        self.spans = {name: telemetry.span(f"cache.{name}", span_attributes)
                      for name in ("get", "get_many", "set", "delete", "invalidate_namespace",
                                   "get_or_set")}

    def watch_near_cache(self, context: PluginContext, near: NearCache) -> None:
        """The near cache's totals, read when the app's metric reader collects:
        local hits, evictions and flushes (kept as plain counts on its hot path)."""
        held = weakref.ref(near)

        def reading(count: str) -> Any:
            def observe() -> list[tuple[float, dict[str, Any]]] | None:
                cache = held()
                return None if cache is None else [(float(getattr(cache, count)), {})]
            return observe

        telemetry = context.telemetry
        telemetry.total("cache.local.hits", "{hit}", "Reads the near cache served from "
                        "process memory", reading("hits"))
        telemetry.total("cache.local.evictions", "{entry}", "Entries the near cache dropped "
                        "to stay within CACHE_LOCAL_ENTRIES and CACHE_LOCAL_BYTES",
                        reading("evictions"))
        telemetry.total("cache.local.flushes", "{flush}", "Times the near cache dropped every "
                        "copy: its invalidations lost, or a FLUSHALL", reading("flushes"))
