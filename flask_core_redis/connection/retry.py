"""The retry policy: the delay before retry ``n`` is ``min(n x 50 ms, 2000 ms)``,
at most ``max_retries`` retries, and no retry of a failure to authenticate.
Built explicitly for every client and every topology, never left to
redis-py's defaults."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import AbstractBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ConnectionError,
    MaxConnectionsError,
    ResponseError,
    TimeoutError,
)
from redis.retry import Retry

from ..config import Settings
from .events import ConnectionEvents

#: How much longer each retry waits than the one before, in seconds.
STEP_SECONDS = 0.05
#: The longest delay between two tries, in seconds.
CAP_SECONDS = 2.0

#: The errors a command is retried on.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (ConnectionError, TimeoutError, OSError)
#: Connection errors to their type, but the credentials will not change
#: between tries: raised at once, never a backoff loop that looks like an outage.
NEVER_RETRIED: tuple[type[Exception], ...] = (AuthenticationError, AuthorizationError)
#: Raised at once too: every connection of the pool in use is no outage, and
#: a retry would only queue behind the same connections.
NOT_AN_OUTAGE: tuple[type[Exception], ...] = (*NEVER_RETRIED, MaxConnectionsError)

T = TypeVar("T")


class LinearBackoff(AbstractBackoff):
    """The retry policy's delays: ``min(failures x step, cap)`` seconds,
    50 ms more for each failure up to 2 s by default. A redis-py backoff
    (``redis.backoff.AbstractBackoff``)."""

    def __init__(self, step: float = STEP_SECONDS, cap: float = CAP_SECONDS) -> None:
        #: Seconds added for each failure.
        self.step = step
        #: The longest delay, in seconds.
        self.cap = cap

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LinearBackoff)
                and (self.step, self.cap) == (other.step, other.cap))

    def __hash__(self) -> int:
        return hash((LinearBackoff, self.step, self.cap))

    def compute(self, failures: int) -> float:
        """The delay in seconds before the next try, after ``failures``
        failures in a row (1 for the first retry)."""
        return min(failures * self.step, self.cap)


class ReportingBackoff(AbstractBackoff):
    """Wraps a backoff and reports each retry, with its attempt number and delay.

    redis-py asks the backoff for a delay only when it is about to retry, so this
    is the one point that sees every retry on every path."""

    def __init__(self, inner: AbstractBackoff, events: ConnectionEvents,
                 address: str) -> None:
        self.inner = inner
        self.events = events
        self.address = address

    def reset(self) -> None:
        self.inner.reset()

    def compute(self, failures: int) -> float:
        delay = self.inner.compute(failures)
        self.events.emit("retry", address=self.address, attempt=failures,
                         delay_ms=delay * 1000)
        return delay

    def ended(self, outcome: str, retries: int, error: BaseException) -> None:
        """Report that the retries of one call ended: ``recovered`` or
        ``gave_up``, after ``retries`` retries, the last failure ``error``."""
        self.events.emit("retried", address=self.address, attempt=retries, error=error,
                         outcome=outcome)


class RetryPolicy:
    """The decisions of the project's retry loops, sync and asyncio alike: a
    failure to authenticate and a full pool are raised at once, whatever else
    says they may be retried; with a ``deadline`` (seconds) the retries stop
    when the next one would start after it, however many were made, instead
    of after ``retries``. (It reads redis-py ``Retry``'s private
    ``_backoff``, ``_retries`` and ``_supported_errors``.)"""

    _backoff: AbstractBackoff
    _retries: int
    #: Seconds after the first try past which no retry starts; None: count.
    deadline: float | None = None

    def _tries(self, started: float, is_retryable: Callable[[Exception], bool] | None,
               fail: Callable[..., Any], with_failure_count: bool) -> Tries:
        """The tries of a call that started at ``started`` (monotonic) and
        failed once: made on the first failure, so that a call that succeeds
        at once pays for nothing more."""
        self._backoff.reset()
        return Tries(self, started, is_retryable, fail, with_failure_count)

    def _gives_up(self, failures: int, started: float) -> bool:
        if self.deadline is None:
            return 0 <= self._retries < failures
        # The next delay, without reporting it: the retry may not happen.
        upcoming = getattr(self._backoff, "inner", self._backoff).compute(failures)
        return time.monotonic() + upcoming - started > self.deadline


class Tries:
    """The tries of one call under a :class:`RetryPolicy`: after each
    failure, :meth:`failed` reports it to the caller's ``fail`` and returns
    what that returned (awaited by an asyncio loop); :meth:`delay` then
    raises the error if no retry may follow, else says how long to wait.
    How the call's retries ended is told once, however the call ends."""

    def __init__(self, policy: RetryPolicy, started: float,
                 is_retryable: Callable[[Exception], bool] | None,
                 fail: Callable[..., Any], with_failure_count: bool) -> None:
        self._policy, self._is_retryable = policy, is_retryable
        self._fail, self._with_failure_count = fail, with_failure_count
        self._failures = 0
        #: The retries decided on, each reported by the backoff before its wait.
        self._retries = 0
        self._started = started
        self._last: Exception | None = None
        self._told = False

    def failed(self, error: Exception) -> Any:
        """Raise ``error`` at once if it is never retried; else count and report it."""
        if isinstance(error, NOT_AN_OUTAGE) or (
                self._is_retryable is not None and not self._is_retryable(error)):
            self._ended("gave_up", error)
            raise error
        self._failures += 1
        self._last = error
        if self._with_failure_count:
            return self._fail(error, self._failures)
        return self._fail(error)

    def delay(self, error: Exception) -> float:
        """Raise ``error`` if the policy gives up; else the delay before the
        next try, in seconds."""
        if self._policy._gives_up(self._failures, self._started):
            self._ended("gave_up", error)
            raise error
        self._retries += 1
        return float(self._policy._backoff.compute(self._failures))

    def recovered(self) -> None:
        """The call succeeded after its retries."""
        if self._last is not None:
            self._ended("recovered", self._last)

    def interrupted(self, error: BaseException) -> None:
        """The call ended with ``error`` where the policy did not decide:
        an error reply to a retry (``recovered``: the server answered), or
        an interruption, a cancelled task say (``gave_up``)."""
        if self._last is not None:
            self._ended("recovered" if isinstance(error, ResponseError) else "gave_up",
                        self._last)

    def _ended(self, outcome: str, error: Exception) -> None:
        """Tell the backoff, if it reports, how the retries ended, once;
        nothing when no retry was made."""
        if self._told:
            return
        self._told = True
        ended = getattr(self._policy._backoff, "ended", None)
        if self._retries > 0 and ended is not None:
            ended(outcome, self._retries, error)


class PolicyRetry(RetryPolicy, Retry):
    """redis-py's ``Retry`` under the project's :class:`RetryPolicy`.

    The loop is written out here rather than inherited, and takes every
    shape of call redis-py makes: ``call_with_retry`` takes ``is_retryable``
    from redis-py 7.0 and ``with_failure_count`` from 7.2, which redis-py
    passes from those releases on."""

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> T:
        started, tries = time.monotonic(), None
        try:
            while True:
                try:
                    result = do()
                except self._supported_errors as error:
                    tries = tries or self._tries(started, is_retryable, fail,
                                                 with_failure_count)
                    tries.failed(error)
                    time.sleep(tries.delay(error))
                else:
                    if tries is not None:
                        tries.recovered()
                    return result
        except BaseException as error:
            if tries is not None:
                tries.interrupted(error)
            raise


class AsyncPolicyRetry(RetryPolicy, AsyncRetry):
    """redis-py's asyncio ``Retry`` under the project's :class:`RetryPolicy`,
    its loop written out for the same reasons as :class:`PolicyRetry`'s."""

    async def call_with_retry(self, do: Callable[[], Awaitable[T]],
                              fail: Callable[..., Any],
                              is_retryable: Callable[[Exception], bool] | None = None,
                              with_failure_count: bool = False) -> T:
        started, tries = time.monotonic(), None
        try:
            while True:
                try:
                    result = await do()
                except self._supported_errors as error:
                    tries = tries or self._tries(started, is_retryable, fail,
                                                 with_failure_count)
                    reported = tries.failed(error)
                    if inspect.isawaitable(reported):
                        await reported
                    await asyncio.sleep(tries.delay(error))
                else:
                    if tries is not None:
                        tries.recovered()
                    return result
        except BaseException as error:  # a cancelled task included
            if tries is not None:
                tries.interrupted(error)
            raise


def build_retry(settings: Settings, events: ConnectionEvents,
                errors: tuple[type[Exception], ...] = RETRYABLE_ERRORS) -> PolicyRetry:
    """The project's policy for ``settings`` as a redis-py ``Retry`` that
    reports its retries."""
    return _with_deadline(PolicyRetry(_reporting(settings, events), settings.max_retries,
                                      errors), settings)


def build_async_retry(settings: Settings, events: ConnectionEvents,
                      errors: tuple[type[Exception], ...] = RETRYABLE_ERRORS,
                      ) -> AsyncPolicyRetry:
    """:func:`build_retry`'s asyncio ``Retry``."""
    return _with_deadline(AsyncPolicyRetry(_reporting(settings, events), settings.max_retries,
                                           errors), settings)  # type: ignore[arg-type]


def _reporting(settings: Settings, events: ConnectionEvents) -> ReportingBackoff:
    return ReportingBackoff(LinearBackoff(), events, settings.address)


R = TypeVar("R", bound=RetryPolicy)


def _with_deadline(retry: R, settings: Settings) -> R:
    retry.deadline = settings.retry_deadline
    return retry
