"""Exceptions raised by flask-core-redis, and the one way errors are shown."""

from __future__ import annotations

from redis.exceptions import ClusterDownError, ConnectionError, SlotNotCoveredError, TimeoutError

#: redis-py's errors that say Redis cannot serve now, not that a command was
#: wrong: a connection refused or lost, a timeout, and a Cluster slot that no
#: master serves (mid-failover, or a master lost for good). The 503 handler
#: answers them, and the fail-open cache fails open on them.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    ConnectionError, TimeoutError, ClusterDownError, SlotNotCoveredError)


class ConfigurationError(ValueError):
    """A configuration value is missing, malformed or out of range.

    Raised by ``init_app`` so that a misconfigured app fails at start-up, not on
    its first request. The message names the key, the offending value (with any
    secret masked) and what would be accepted.
    """


class PluginError(RuntimeError):
    """A plugin could not be loaded, set up or run a hook; the message names it."""


class PluginNotAvailable(AttributeError, RuntimeError):
    """``ext.plugin(cls)`` or ``ext.<name>`` for a plugin that is not enabled on
    the current app, or outside an app context. An AttributeError too, so that
    ``hasattr(ext, "otp")`` answers False instead of raising."""


class RedisUnavailable(RuntimeError):
    """Redis could not be reached, said in a plugin's own words: a plugin that
    wraps redis-py's ConnectionError or TimeoutError raises this, or a subclass,
    so that ``REDIS_ERROR_HANDLER`` answers 503 for it as for the original."""


def describe_error(error: BaseException | None) -> str:
    """``"ConnectionError: Error 111 connecting to ..."``: the one way errors are
    shown in logs, reports and CLI output (redis-py's messages carry addresses,
    never credentials)."""
    if error is None:
        return "unknown error"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
