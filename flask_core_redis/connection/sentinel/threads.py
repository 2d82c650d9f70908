"""The two threads of a :class:`~.watch.MasterWatch`: one runs its event loop,
the other hands its events to the registration's
:class:`~flask_core_redis.connection.events.ConnectionEvents`, so that a log
handler or a plugin's hook that blocks never stalls the loop."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..events import ConnectionEvents, EventKind

T = TypeVar("T")

#: How long a task that was cancelled is given to end before it is cancelled
#: again: before Python 3.12, wait_for() loses a cancellation that comes as
#: what it waits for completes.
CANCEL_ROUND_SECONDS = 0.05


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


class LoopThread:
    """A daemon thread named ``name`` running an event loop until stopped;
    stopping cancels every task and lets each finish (closing what it
    opened) before the loop closes."""

    def __init__(self, name: str) -> None:
        # Made in an empty context, as the tasks are (see call()): the loop
        # keeps the context its own handles are made in.
        self.loop = contextvars.Context().run(asyncio.new_event_loop)
        #: Set when stop() is called: a task that fails then is being stopped.
        self.stopping = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, coroutine_function: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``coroutine_function()`` in the loop, as a task, in a context of
        its own: the caller's (an app context, say) would live as long as it."""
        self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(coroutine_function()),
                                       context=contextvars.Context())

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            while tasks := asyncio.all_tasks(self.loop):
                for task in tasks:
                    task.cancel()
                self.loop.run_until_complete(asyncio.wait(tasks, timeout=CANCEL_ROUND_SECONDS))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def stop(self, wait: float | None) -> None:
        """Stop the loop; wait up to ``wait`` seconds (None: not at all) for
        the thread to end."""
        self.stopping = True
        if self._thread is threading.current_thread():
            wait = None  # stopped from its own loop: it ends once this returns
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed already
            return
        if wait is not None:
            self._thread.join(wait)


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
