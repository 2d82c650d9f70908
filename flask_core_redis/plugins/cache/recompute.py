"""``get_or_set``'s recomputation: one caller at a time, across all processes,
computes a missing or expiring entry while the others wait for its value.

- A caller takes the entry's lock and reads the entry in one script, so it
  never recomputes a value that was stored since it looked.
- While it computes, the lock is renewed every third of
  ``CACHE_LOCK_TIMEOUT`` (by a thread for a sync caller, a task for an async
  one): a long computation keeps it, and the lock of a process that died
  expires.
- One script stores the value and releases the lock, and stores only if the
  namespace was not invalidated during the computation.
- The others poll the entry and the lock in one MGET until a value appears or
  the lock goes without one (the computation raised, or its value was
  refused); then they compete for the lock again. An exception reaches only
  the caller whose computation raised it.
- Every command, the renewals' included, uses the client the operation is
  run with, whose reads are bounded: on a hung server no caller, and no
  renewal, waits for ever.
- It is one operation (:mod:`flask_core_redis.plugin_api.operations`), run by
  ``get_or_set`` and ``aget_or_set`` alike: the lock is Redis's, so sync and
  async callers of one key share one computation."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TypeVar

from ...plugin_api import OUTAGE_ERRORS, Call, CallRenewing, Operation, Pause
from .entries import Codec, Entry
from .guard import Guard
from .near import NearCache
from .scripts import CLAIM, RENEW, STORE_COMPUTED, UNLOCK, Names, mget, run_script
from .telemetry import CacheTelemetry

T = TypeVar("T")

#: How often a waiting caller looks for the value it waits for.
POLL_SECONDS = 0.02


class Snapshot:
    """An entry's state in one atomic read."""

    __slots__ = ("locked", "raw", "version")

    def __init__(self, version: bytes | None, raw: bytes | None, locked: bool) -> None:
        self.version, self.raw, self.locked = version or b"0", raw or None, locked


class Recompute:
    """``get_or_set`` for one cache, as an operation: see the module's docstring."""

    def __init__(self, guard: Guard, codec: Codec, lock_timeout: float,
                 telemetry: CacheTelemetry) -> None:
        self._guard = guard
        self._codec = codec
        self._telemetry = telemetry
        self._note = telemetry.spans["get_or_set"].note
        self._lock_timeout = lock_timeout
        self._lock_ms = round(lock_timeout * 1000)

    def _served(self, result: str, computed: bool, namespace: str) -> None:
        """Count a ``get_or_set`` answered from Redis: ``hit`` when the key
        held a value (an early refresh included), ``miss`` when it did not."""
        self._telemetry.requests.add(1, result=result, namespace=namespace)
        self._note(result=result, computed=computed)

    def get_or_set(self, names: Names, compute: Callable[[], T], ttl_ms: int,
                   namespace: str, near: NearCache | None = None) -> Operation[T]:
        seen = yield from self._guard.guarded(self._look(names, near), None)
        if seen is None:  # Redis is down: compute, store nothing
            return (yield from self._compute_without_redis(compute, namespace))
        entry = self._entry(seen)
        if entry is not None and (seen.locked or not entry.due(time.time() * 1000)):
            self._served("hit", False, namespace)
            return entry.value  # type: ignore[no-any-return]
        reason = "missing" if entry is None else "early"
        while True:
            token = secrets.token_hex(8)
            claim = yield from self._guard.guarded(self._claim(names, token), None)
            if claim is None:
                return (yield from self._compute_without_redis(compute, namespace))
            taken, now = claim
            entry = self._entry(now)
            if entry is not None and (not taken or now.raw != seen.raw):
                if taken:  # stored since we looked: no need to compute
                    yield from self._unlock(names, token)
                self._served("hit", False, namespace)
                return entry.value  # type: ignore[no-any-return]
            if taken:
                self._telemetry.recomputations.add(1, reason=reason, namespace=namespace)
                self._served("hit" if reason == "early" else "miss", True, namespace)
                try:
                    return (yield from self._compute_holding(names, token, now.version,
                                                             compute, ttl_ms))
                finally:  # this process's next read sees what it stored
                    if near is not None:
                        near.forget([names.entry])
            started = time.monotonic()
            waited = yield from self._wait_while_locked(names)
            self._telemetry.waits.record(time.monotonic() - started, namespace=namespace)
            if waited is None:
                return (yield from self._compute_without_redis(compute, namespace))
            seen, entry = waited
            if entry is not None:
                self._served("miss", False, namespace)
                return entry.value  # type: ignore[no-any-return]
            # The lock went without a value: compete for it again.

    def _compute_without_redis(self, compute: Callable[[], T], namespace: str) -> Operation[T]:
        """Redis is down: compute, store nothing."""
        self._telemetry.recomputations.add(1, reason="fail_open", namespace=namespace)
        self._note(result="miss", computed=True)
        return (yield Call(compute))  # type: ignore[no-any-return]

    def _entry(self, snapshot: Snapshot) -> Entry | None:
        return self._codec.decode(snapshot.raw, snapshot.version)

    def _look(self, names: Names, near: NearCache | None = None) -> Operation[Snapshot]:
        """The entry's state; one the near cache may keep, if ``near``."""
        marks = None if near is None else near.begin(names.version, [names.entry])
        version, raw, lock = yield mget(*names.all())
        seen = Snapshot(version, raw, lock is not None)
        if marks is not None:
            value = self._codec.value(seen.raw, seen.version)
            near.keep(marks, names.version, seen.version, [names.entry],  # type: ignore[union-attr]
                      [seen.raw], [value])
        return seen

    def _claim(self, names: Names, token: str) -> Operation[tuple[bool, Snapshot]]:
        taken, version, raw = yield from run_script(CLAIM, names.all(), [token, self._lock_ms])
        return taken == 1, Snapshot(version, raw, True)

    def _wait_while_locked(self, names: Names) -> Operation[tuple[Snapshot, Entry | None] | None]:
        """Poll until a value appears or the lock goes; None if Redis is down."""
        while True:
            yield Pause(POLL_SECONDS)
            seen = yield from self._guard.guarded(self._look(names), None)
            if seen is None:
                return None
            entry = self._entry(seen)
            if entry is not None or not seen.locked:
                return seen, entry

    def _compute_holding(self, names: Names, token: str, version: bytes,
                         compute: Callable[[], T], ttl_ms: int) -> Operation[T]:
        """Compute under the lock, keeping it alive; store the value and
        release the lock in one step, unless the namespace changed meanwhile.
        Whatever stops it before the value is stored (the computation's
        exception, a refused value, cancellation) releases the lock."""
        try:
            started = time.perf_counter()
            value = yield CallRenewing(compute, renew=lambda: self._renew(names, token),
                                       every=self._lock_timeout / 3)
            compute_ms = (time.perf_counter() - started) * 1000
            body = self._codec.encode(value, ttl_ms, compute_ms)
            yield from self._guard.guarded(run_script(
                STORE_COMPUTED, names.all(), [ttl_ms, version, token, body]), None)
        except GeneratorExit:  # closed unfinished: no step can run any more
            raise
        except BaseException:
            yield from self._unlock(names, token)
            raise
        return value  # type: ignore[no-any-return]

    def _unlock(self, names: Names, token: str) -> Operation[None]:
        yield from self._guard.guarded(run_script(UNLOCK, [names.lock], [token]), None)

    def _renew(self, names: Names, token: str) -> Operation[bool]:
        """True while the lock is ours (or Redis cannot say: keep trying)."""
        try:
            renewed = yield from self._guard.guarded(
                run_script(RENEW, [names.lock], [token, self._lock_ms]), 1)
        except OUTAGE_ERRORS:  # fail-closed, and Redis is down: the next try may work
            return True
        return bool(renewed)
