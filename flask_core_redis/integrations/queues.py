"""RQ job queues on the app's Redis: ``queue(ext, "emails").enqueue(...)``.

Needs RQ: ``pip install 'flask-core-redis[rq]'``.

RQ stores pickled bytes and blocks in BRPOP / BLMOVE for its own timeouts, so
it gets a client of its own: bytes responses, no read timeout, health checks
on; never the app's shared client. In ``memory://`` mode jobs run at once, in
the process that enqueues them, so the demo works with no Redis and no worker.
RQ does not support Redis Cluster. RQ's keys (``rq:*``) are RQ's own: RQ has
no key prefix option, so they are outside ``KEY_PREFIX``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from redis import Redis

from ..errors import ConfigurationError
from ..state import RedisState, Registration, current_state
from ._missing import missing_library

if TYPE_CHECKING:
    from rq import Queue

__all__ = ["queue"]


def queue(ext: Registration, name: str = "default", **options: Any) -> Queue:
    """An ``rq.Queue`` named ``name`` on the current app's Redis, for ``ext``
    (a :class:`~flask_core_redis.CoreRedis`); ``options`` go to ``rq.Queue``.
    Its connection is a client of its own, shared by every queue of the app.
    In ``memory://`` mode its jobs run as they are enqueued; Cluster mode is
    refused with a ConfigurationError."""
    return make_queue(current_state(ext.config_prefix), name, **options)


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


def make_queue(state: RedisState, name: str, **options: Any) -> Queue:
    """An ``rq.Queue`` named ``name`` on ``state``'s queue client."""
    try:
        from rq import Queue
    except ImportError as error:
        raise missing_library(__name__, "RQ", "'flask-core-redis[rq]'") from error
    if state.settings.mode == "memory":
        options.setdefault("is_async", False)
    return Queue(name, connection=queue_connection(state), **options)
