"""OpenTelemetry in tests: a fresh global meter and tracer provider per test
(the SDK's in-memory reader and span exporter), and the reset that puts the
process back as it was, for the next test.

The global providers can be set once per process, and the extension makes
its instruments once per process: both are reset here through private names
(of opentelemetry-api 1.30 to 1.45, and of the extension)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any


def reset_opentelemetry() -> None:
    """Forget the global providers, the extension's instruments and redis-py's
    observability, if any were set."""
    if "opentelemetry" not in sys.modules:
        return
    from opentelemetry import trace
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    from flask_core_redis.telemetry import instruments

    _reset_redis_py()
    provider = metrics_internal._METER_PROVIDER
    if provider is not None and hasattr(provider, "shutdown"):
        provider.shutdown()
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()
    instruments._made.clear()
    instruments._observed.clear()
    instruments._tracing_on = False


def _reset_redis_py() -> None:
    try:
        from redis.observability import recorder
        from redis.observability.providers import (
            get_observability_instance,
            reset_observability_instance,
        )
    except ImportError:
        return
    if get_observability_instance().is_enabled():
        reset_observability_instance()
    reset = getattr(recorder, "reset_collector", None)
    if reset is not None:
        reset()


class Recorded:
    """What the process recorded since the providers were set."""

    def __init__(self, reader: Any, exporter: Any) -> None:
        self.reader = reader
        self.exporter = exporter

    def metrics(self) -> dict[str, Any]:
        """Every metric collected now, by name."""
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, point)`` of each data point of metric ``name``."""
        metric = self.metrics().get(name)
        if metric is None:
            return []
        return [(dict(point.attributes or {}), point) for point in metric.data.data_points]

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of the values (a histogram's: counts) of ``name`` whose
        attributes include ``attributes``."""
        total = 0.0
        for found, point in self.points(name):
            if all(found.get(key) == value for key, value in attributes.items()):
                total += point.count if hasattr(point, "count") else point.value
        return total

    def spans(self, name: str | None = None) -> list[Any]:
        """The finished spans, of ``name`` if given."""
        return [span for span in self.exporter.get_finished_spans()
                if name is None or span.name == name]

    def every_attribute(self) -> Iterator[tuple[str, str, Any]]:
        """``(where, attribute name, value)`` of every metric data point's and
        every span's attributes, events and status, and every span's name."""
        for name, metric in self.metrics().items():
            for point in metric.data.data_points:
                for key, value in (point.attributes or {}).items():
                    yield name, key, value
        for span in self.spans():
            yield span.name, "<name>", span.name
            yield span.name, "<status>", span.status.description
            for key, value in (span.attributes or {}).items():
                yield span.name, key, value
            for event in span.events:
                for key, value in (event.attributes or {}).items():
                    yield f"{span.name} event {event.name}", key, value


def fresh_providers() -> Recorded:
    """Set new global providers: the SDK's with an in-memory metric reader,
    and a tracer provider that keeps every finished span."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    reset_opentelemetry()
    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    return Recorded(reader, exporter)
