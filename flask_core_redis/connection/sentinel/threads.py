"""The two threads of a :class:`~.watch.MasterWatch`: one runs its event loop,
the other hands its events to the registration's
:class:`~flask_core_redis.connection.events.ConnectionEvents`, so that a log
handler or a plugin's hook that blocks never stalls the loop."""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

from ..events import ConnectionEvents, EventKind
from ..loops import LoopThread

__all__ = ["EventRelay", "LoopThread", "task_of"]

T = TypeVar("T")

def task_of(awaitable: Awaitable[T]) -> asyncio.Future[T]:
    """``awaitable`` as a task whose failure is always read: one that ends
    with an error of its own after its waiter gave up (the watch stopping)
    would otherwise be reported as "Task exception was never retrieved"."""
    task = asyncio.ensure_future(awaitable)
    task.add_done_callback(_read_outcome)
    return task


def _read_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class EventRelay:
    """Emits events on ``events`` (held weakly: the relay must not keep a
    registration alive) from a daemon thread of its own, started with the
    first event, in the order they come; between :meth:`stop` and
    :meth:`open`, events are dropped (a watch's loop still stopping must
    not start a thread that nobody stops)."""

    def __init__(self, events: ConnectionEvents, name: str) -> None:
        self._events = weakref.ref(events)
        self._name = name
        self._queue: queue.SimpleQueue[tuple[EventKind, dict[str, Any]] | None] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open = False

    def open(self) -> None:
        """Take events again."""
        with self._lock:
            self._open = True

    def emit(self, kind: EventKind, **details: Any) -> None:
        with self._lock:
            if not self._open:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._relay, args=(self._queue,),
                                                name=self._name, daemon=True)
                self._thread.start()
            self._queue.put((kind, details))

    def _relay(self, events_queue: queue.SimpleQueue[Any]) -> None:
        while (item := events_queue.get()) is not None:
            self._emit_now(*item)

    def _emit_now(self, kind: EventKind, details: dict[str, Any]) -> None:
        # A function of its own: while the loop above waits for the next
        # event, no local of it may hold the events (nor the app behind them).
        events = self._events()
        if events is not None:
            events.emit(kind, **details)

    def stop(self, wait: float) -> None:
        """Emit what is queued, then end the thread, waiting up to ``wait``
        seconds for it; drop events until :meth:`open`."""
        with self._lock:
            self._open = False
            thread, self._thread = self._thread, None
            events_queue, self._queue = self._queue, queue.SimpleQueue()
        if thread is not None:
            events_queue.put(None)
            thread.join(wait)

    def forget(self) -> None:
        """In a forked child, where the thread is not: start afresh."""
        self._lock = threading.Lock()
        self._open = False
        self._thread = None
        self._queue = queue.SimpleQueue()
