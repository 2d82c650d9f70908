"""redis-py's own metrics (redis-py 7.2+: ``redis.observability``), turned on
for the process when a registration turns telemetry on."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("flask_core_redis")

#: redis-py's metric groups turned on: connection counts and create times;
#: waits for a free connection, pool timeouts and closes; errors and
#: retries; each command's duration. (Pub/sub, streams and the client-side
#: cache stay off: their attributes may name channels and streams.)
METRIC_GROUPS = ("CONNECTION_BASIC", "CONNECTION_ADVANCED", "RESILIENCY", "COMMAND")

_lock = threading.Lock()


def enable_redis_py_metrics() -> bool:
    """Turn redis-py's metrics on for every client of the process, once;
    True if they are on. Left as they are when the app initialised them
    itself; False on a redis-py without them (before 7.2)."""
    try:
        from redis.observability.config import MetricGroup, OTelConfig
        from redis.observability.providers import get_observability_instance
    except ImportError:
        return False
    with _lock:
        instance = get_observability_instance()
        if not instance.is_enabled():
            instance.init(OTelConfig(
                metric_groups=[MetricGroup[name] for name in METRIC_GROUPS],
                hide_pubsub_channel_names=True, hide_stream_names=True))
            logger.info("redis-py's OpenTelemetry metrics are on (%s)",
                        ", ".join(METRIC_GROUPS))
    return True
