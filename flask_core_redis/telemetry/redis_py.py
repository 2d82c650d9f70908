"""redis-py's own metrics (redis-py 7.2+: ``redis.observability``), turned on
for the process when a registration turns telemetry on."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("flask_core_redis")

_lock = threading.Lock()


def enable_redis_py_metrics(groups: tuple[str, ...]) -> bool:
    """Turn redis-py's metric ``groups`` (``OTEL_REDIS_PY_METRICS``) on for
    every client of the process, once; True if redis-py records metrics.
    Left as they are when they are on already (the app initialised them, or
    an earlier registration); False on a redis-py without them (before 7.2),
    or with no group asked for."""
    if not groups:
        return False
    try:
        from redis.observability.config import MetricGroup, OTelConfig
        from redis.observability.providers import get_observability_instance
    except ImportError:
        return False
    with _lock:
        instance = get_observability_instance()
        if not instance.is_enabled():
            instance.init(OTelConfig(
                metric_groups=[MetricGroup[name] for name in groups],
                hide_pubsub_channel_names=True, hide_stream_names=True))
            logger.info("redis-py's OpenTelemetry metrics are on (%s)", ", ".join(groups))
    return True
