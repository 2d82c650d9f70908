"""Fail-open: what the cache does when Redis cannot be reached.

Only an outage is failed open: a connection error or a timeout, or a Cluster
that reports itself down (what the core's retry policy retries). A reply error
(a ``ResponseError``: a wrong type, a script error, out of memory) is a
bug or a server-side refusal, and is raised whatever ``CACHE_FAIL_OPEN`` says.

An outage is paid for once, not by every call: after a failure a breaker
skips Redis for ``CACHE_BREAKER_SECONDS`` (calls get their fallback at once),
then lets one call through to probe it; that call's success closes the breaker,
its failure opens it again.

Deletions and invalidations never fail open: they are tried even while the
breaker is open, and their outage errors are raised (a lost invalidation would
serve stale entries once Redis is back)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ...plugin_api import OUTAGE_ERRORS, Operation, describe_error

logger = logging.getLogger("flask_core_redis")

T = TypeVar("T")


class Breaker:
    """Open (Redis skipped) for ``seconds`` after each failure, then half-open:
    one caller probes while the others keep skipping. Logs one WARNING when
    it first opens and one INFO when it closes again."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._open_until: float | None = None  # time.monotonic(); None: closed
        self._lock = threading.Lock()

    def allows(self) -> bool:
        """Whether this call may use Redis."""
        if self._open_until is None:
            return True
        with self._lock:
            now = time.monotonic()
            if self._open_until is None:
                return True
            if now < self._open_until:
                return False
            self._open_until = now + self.seconds  # this caller probes; others skip
            return True

    def failed(self, error: Exception) -> None:
        with self._lock:
            first = self._open_until is None
            self._open_until = time.monotonic() + self.seconds
        if first:
            logger.warning("cache: Redis unavailable, serving misses until it is back "
                           "(checking again every %g s): %s", self.seconds,
                           describe_error(error))

    def succeeded(self) -> None:
        if self._open_until is not None:
            with self._lock:
                recovered, self._open_until = self._open_until is not None, None
            if recovered:
                logger.info("cache: Redis is back")


class Guard:
    """Wraps the cache's operations: with ``fail_open``, one that meets an
    outage, or that the breaker skips, gives its fallback (a miss, a skipped
    write); otherwise every one runs and its error is raised. The wrappers are
    operations themselves, so sync and async callers share them and the
    breaker."""

    def __init__(self, fail_open: bool, breaker_seconds: float,
                 fell_open: Callable[[], None] = lambda: None) -> None:
        self.fail_open = fail_open
        self.breaker = Breaker(breaker_seconds)
        #: Called each time an operation gives its fallback.
        self.fell_open = fell_open

    def guarded(self, operation: Operation[T], fallback: T) -> Operation[T]:
        """``operation``'s result, or ``fallback``."""
        if not self.fail_open:
            return (yield from operation)
        if not self.breaker.allows():
            self.fell_open()
            return fallback
        try:
            result = yield from operation
        except OUTAGE_ERRORS as error:
            self.breaker.failed(error)
            self.fell_open()
            return fallback
        self.breaker.succeeded()
        return result

    def raising(self, operation: Operation[T]) -> Operation[T]:
        """``operation``'s result, even while the breaker is open, its error
        raised whatever ``fail_open`` says: for deletions and invalidations.
        Skipped or lost without a word, they would leave stale entries to be
        served once Redis is back; the caller must know that they did not
        happen."""
        try:
            result = yield from operation
        except OUTAGE_ERRORS as error:
            if self.fail_open:
                self.breaker.failed(error)
            raise
        if self.fail_open:
            self.breaker.succeeded()
        return result
