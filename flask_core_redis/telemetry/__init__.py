"""Telemetry: the extension's OpenTelemetry instruments and spans
(:mod:`.instruments`), the connection's (:mod:`.connection`), and redis-py's
own metrics (:mod:`.redis_py`). Everything here records only when a
registration's ``OTEL`` key is on, and imports OpenTelemetry only then."""

from .connection import ConnectionTelemetry
from .instruments import NAMESPACE, OFF, OTHER, Attributes, Instrument, Span, Telemetry
from .redis_py import enable_redis_py_metrics

__all__ = ["NAMESPACE", "OFF", "OTHER", "Attributes", "ConnectionTelemetry", "Instrument",
           "Span", "Telemetry", "enable_redis_py_metrics"]
