"""``get_or_set``'s recomputation: one caller at a time, across all processes,
computes a missing or expiring entry while the others wait for its value.

- A caller takes the entry's lock and reads the entry in one script, so it
  never recomputes a value that was stored since it looked.
- While it computes, a thread renews the lock every third of
  ``CACHE_LOCK_TIMEOUT``: a long computation keeps it, and the lock of a
  process that died expires.
- One script stores the value and releases the lock, and stores only if the
  namespace was not invalidated during the computation.
- The others poll the entry and the lock in one MGET until a value appears or
  the lock goes without one (the computation raised, or its value was
  refused); then they compete for the lock again. An exception reaches only
  the caller whose computation raised it.
- Every command, the lock keeper's included, uses the client it is given,
  whose reads are bounded: on a hung server no caller, and no keeper thread,
  waits for ever."""

from __future__ import annotations

import functools
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ...plugin_api import OUTAGE_ERRORS
from .entries import Codec, Entry
from .guard import Guard
from .scripts import CLAIM, RENEW, STORE_COMPUTED, UNLOCK, Names, read_raw, run_raw

T = TypeVar("T")

#: How often a waiting caller looks for the value it waits for.
POLL_SECONDS = 0.02


class Snapshot:
    """An entry's state in one atomic read."""

    __slots__ = ("locked", "raw", "version")

    def __init__(self, version: bytes | None, raw: bytes | None, locked: bool) -> None:
        self.version, self.raw, self.locked = version or b"0", raw or None, locked


class LockKeeper:
    """Renews a lock every ``interval`` seconds, in a thread of its own, from
    ``with`` until the block ends or the lock turns out not to be ours."""

    def __init__(self, renew: Callable[[], bool], interval: float) -> None:
        self._renew = renew
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="cache-lock-keeper",
                                        daemon=True)

    def __enter__(self) -> LockKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()

    def _keep(self) -> None:
        while not self._done.wait(self._interval):
            if not self._renew():
                return


class Recompute:
    """``get_or_set`` for one cache: see the module's docstring."""

    def __init__(self, client: Callable[[], Any], guard: Guard,
                 codec: Codec, lock_timeout: float) -> None:
        self._client = client
        self._guard = guard
        self._codec = codec
        self._lock_timeout = lock_timeout
        self._lock_ms = round(lock_timeout * 1000)

    def get_or_set(self, names: Names, compute: Callable[[], T], ttl_ms: int) -> T:
        seen = self._guard.run(lambda: self._look(names), None)
        if seen is None:  # Redis is down: compute, store nothing
            return compute()
        entry = self._entry(seen)
        if entry is not None and (seen.locked or not entry.due(time.time() * 1000)):
            return entry.value  # type: ignore[no-any-return]
        while True:
            token = secrets.token_hex(8)
            claim = self._guard.run(functools.partial(self._claim, names, token), None)
            if claim is None:
                return compute()
            taken, now = claim
            entry = self._entry(now)
            if entry is not None and (not taken or now.raw != seen.raw):
                if taken:  # stored since we looked: no need to compute
                    self._unlock(names, token)
                return entry.value  # type: ignore[no-any-return]
            if taken:
                return self._compute_holding(names, token, now.version, compute, ttl_ms)
            waited = self._wait_while_locked(names)
            if waited is None:
                return compute()
            seen, entry = waited
            if entry is not None:
                return entry.value  # type: ignore[no-any-return]
            # The lock went without a value: compete for it again.

    def _entry(self, snapshot: Snapshot) -> Entry | None:
        return self._codec.decode(snapshot.raw, snapshot.version)

    def _look(self, names: Names) -> Snapshot:
        version, raw, lock = read_raw(self._client(), names.all())
        return Snapshot(version, raw, lock is not None)

    def _claim(self, names: Names, token: str) -> tuple[bool, Snapshot]:
        taken, version, raw = run_raw(self._client(), CLAIM, names.all(),
                                      [token, self._lock_ms])
        return taken == 1, Snapshot(version, raw, True)

    def _wait_while_locked(self, names: Names) -> tuple[Snapshot, Entry | None] | None:
        """Poll until a value appears or the lock goes; None if Redis is down."""
        while True:
            time.sleep(POLL_SECONDS)
            seen = self._guard.run(lambda: self._look(names), None)
            if seen is None:
                return None
            entry = self._entry(seen)
            if entry is not None or not seen.locked:
                return seen, entry

    def _compute_holding(self, names: Names, token: str, version: bytes,
                         compute: Callable[[], T], ttl_ms: int) -> T:
        """Compute under the lock, keeping it alive; store the value and
        release the lock in one step, unless the namespace changed meanwhile."""
        stored = False
        try:
            with LockKeeper(lambda: self._renew(names, token), self._lock_timeout / 3):
                started = time.perf_counter()
                value = compute()
                compute_ms = (time.perf_counter() - started) * 1000
            body = self._codec.encode(value, ttl_ms, compute_ms)
            self._guard.run(lambda: run_raw(self._client(), STORE_COMPUTED, names.all(),
                                            [ttl_ms, version, token, body]), None)
            stored = True
            return value
        finally:
            if not stored:
                self._unlock(names, token)

    def _unlock(self, names: Names, token: str) -> None:
        self._guard.run(lambda: run_raw(self._client(), UNLOCK, [names.lock], [token]), None)

    def _renew(self, names: Names, token: str) -> bool:
        """True while the lock is ours (or Redis cannot say: keep trying)."""
        try:
            renewed = self._guard.run(lambda: run_raw(
                self._client(), RENEW, [names.lock], [token, self._lock_ms]), 1)
        except OUTAGE_ERRORS:  # fail-closed, and Redis is down: the next try may work
            return True
        return bool(renewed)
