"""Fail-open: what the cache does when Redis cannot be reached.

Only an outage is failed open: a connection error or a timeout, or a Cluster
that reports itself down (what the core's retry policy retries). A reply error
(a ``ResponseError``: a wrong type, a script error, out of memory) is a
bug or a server-side refusal, and is raised whatever ``CACHE_FAIL_OPEN`` says."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    SlotNotCoveredError,
    TimeoutError,
)

from ...plugin_api import describe_error

logger = logging.getLogger("flask_core_redis")

T = TypeVar("T")

OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    ConnectionError, TimeoutError, ClusterDownError, SlotNotCoveredError)


class _OutageLog:
    """One WARNING when Redis starts failing, one INFO when it is back."""

    def __init__(self) -> None:
        self._failing = False
        self._lock = threading.Lock()

    def failed(self, error: Exception) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            logger.warning("cache: Redis unavailable, serving misses until it is back: "
                           "%s", describe_error(error))

    def succeeded(self) -> None:
        if self._failing:
            with self._lock:
                recovered, self._failing = self._failing, False
            if recovered:
                logger.info("cache: Redis is back")


class Guard:
    """Runs the cache's Redis calls: with ``fail_open``, a failed call gives
    its fallback (a miss, a skipped write); otherwise the error is raised."""

    def __init__(self, fail_open: bool) -> None:
        self.fail_open = fail_open
        self._outage = _OutageLog()

    def run(self, call: Callable[[], T], fallback: T) -> T:
        try:
            result = call()
        except OUTAGE_ERRORS as error:
            if not self.fail_open:
                raise
            self._outage.failed(error)
            return fallback
        self._outage.succeeded()
        return result
