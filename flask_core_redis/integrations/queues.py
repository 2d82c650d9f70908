"""RQ job queues on the app's Redis settings.

RQ stores pickled bytes and blocks in BRPOP / BLMOVE for its own timeouts, so
it gets a client of its own: bytes responses, no read timeout, health checks
on; never the app's shared client. In ``memory://`` mode jobs run at once, in
the process that enqueues them, so the demo works with no Redis and no worker.
RQ does not support Redis Cluster."""

from __future__ import annotations

from typing import Any, cast

from redis import Redis

from ..errors import ConfigurationError
from ..state import RedisState


def queue_connection(state: RedisState) -> Redis:
    """RQ's client for ``state``'s registration, built once."""
    settings = state.settings
    if settings.mode == "cluster":
        raise ConfigurationError(
            f"RQ does not support Redis Cluster, and {settings.prefix}_* selects Cluster "
            "mode. Give queues a standalone or Sentinel Redis, e.g. a second "
            "CoreRedis(config_prefix='QUEUE_REDIS') with QUEUE_REDIS_URL.")
    return cast(Redis, state.own_client("rq", duplicate=True, decode_responses=False,
                                        socket_timeout_ms=None))


def make_queue(state: RedisState, name: str, **options: Any) -> Any:
    """An ``rq.Queue`` named ``name`` on ``state``'s queue client."""
    try:
        from rq import Queue
    except ImportError:
        raise ConfigurationError(
            "job queues need RQ: pip install 'flask-core-redis[rq]'") from None
    if state.settings.mode == "memory":
        options.setdefault("is_async", False)
    return Queue(name, connection=queue_connection(state), **options)
