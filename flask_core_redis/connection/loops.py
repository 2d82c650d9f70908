"""Event loops: the thread that runs one (a Sentinel watch's, the asyncio
clients' own), and the asyncio clients that live on one loop, their *home*.

A ``redis.asyncio`` connection belongs to the loop that opened it: its
stream, its pool's lock and conditions fail from any other ("attached to a
different loop", "Event loop is closed"). Flask runs each ``async def`` view
under a WSGI server in a new event loop, closed when the view returns, so a
client made in one view breaks in the next. The clients here keep their
connections on their home loop and run every call there: from the home loop
itself directly, from any other loop by handing the call over
(:class:`HandedOverCall`) and awaiting its result. Cancelling the awaiting
task cancels the call on the home loop, where redis-py closes a connection
whose command was cancelled mid-flight, and the awaiting task raises once
the call has ended there."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from redis.asyncio.client import Pipeline, Redis
from redis.asyncio.cluster import ClusterPipeline

T = TypeVar("T")

#: How long a task that was cancelled is given to end before it is cancelled
#: again: before Python 3.12, wait_for() loses a cancellation that comes as
#: what it waits for completes.
CANCEL_ROUND_SECONDS = 0.05


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


class HomeLoopClosed(RuntimeError):
    """A client was used after its home loop closed."""


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def at_home(home: asyncio.AbstractEventLoop, method: Callable[..., Coroutine[Any, Any, T]],
            *args: Any, **kwargs: Any) -> Awaitable[T]:
    """``method(*args, **kwargs)`` to await on ``home``: the call itself when
    it is the running loop (no extra frame on the hot path), else handed over
    to it, the awaiting task waiting for the result. Cancelling that task
    cancels the call on ``home`` and waits for it to end there (its connection
    given back to the pool) before raising."""
    if running_loop() is home:
        return method(*args, **kwargs)
    return _handed_over(home, method(*args, **kwargs))


async def _handed_over(home: asyncio.AbstractEventLoop,
                       coroutine: Coroutine[Any, Any, T]) -> T:
    call = HandedOverCall(home, coroutine)
    try:
        return await asyncio.shield(call.ended)
    except asyncio.CancelledError:
        await call.cancel_and_wait()
        raise


class HandedOverCall:
    """A coroutine run as a task on ``home`` for a task of another loop.

    ``ended`` (a future of the caller's loop) takes the task's outcome once
    the task has ended on ``home``, never before: ``run_coroutine_threadsafe``'s
    future is cancelled at once, so a caller cancelled mid-command went on (a
    pipeline's ``async with`` giving its connection back a second time) while
    the call still ran on ``home``, and two commands shared one connection."""

    def __init__(self, home: asyncio.AbstractEventLoop,
                 coroutine: Coroutine[Any, Any, Any]) -> None:
        self._home = home
        self._caller = asyncio.get_running_loop()
        self.ended: asyncio.Future[Any] = self._caller.create_future()
        self._task: asyncio.Future[Any] | None = None
        try:
            home.call_soon_threadsafe(self._start, coroutine)
        except RuntimeError:  # closed
            coroutine.close()
            raise HomeLoopClosed(
                "this asyncio client's event loop has closed: get the client again "
                "(ext.async_client) rather than keeping it across event loops") from None

    def _start(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self._task = asyncio.ensure_future(coroutine)
        self._task.add_done_callback(self._report)

    def _report(self, task: asyncio.Future[Any]) -> None:
        outcome = _outcome(task)
        with contextlib.suppress(RuntimeError):  # the caller's loop closed: nobody waits
            self._caller.call_soon_threadsafe(_settle, self.ended, outcome)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def cancel_and_wait(self) -> None:
        """Cancel the task on ``home`` and wait for it to end, however often
        this task is cancelled meanwhile."""
        try:
            self._home.call_soon_threadsafe(self._cancel)
        except RuntimeError:  # closed: the task ended with it
            return
        while not self.ended.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([self.ended])


def _outcome(task: asyncio.Future[Any]) -> tuple[str, Any]:
    if task.cancelled():
        return "cancelled", None
    error = task.exception()
    return ("error", error) if error is not None else ("result", task.result())


def _settle(future: asyncio.Future[Any], outcome: tuple[str, Any]) -> None:
    kind, value = outcome
    if kind == "cancelled":
        future.cancel()
    elif kind == "error":
        future.set_exception(value)
    else:
        future.set_result(value)


class HomeLoopBound:
    """What every homed client and pipeline has: its home loop."""

    #: The loop its connections live on.
    home: asyncio.AbstractEventLoop


class HomedPipeline(HomeLoopBound, Pipeline):  # type: ignore[misc]
    """A pipeline of a homed client: stacking commands is local; executing,
    WATCH and its reset run on the home loop."""

    async def execute(self, raise_on_error: bool = True) -> Any:
        return await at_home(self.home, super().execute, raise_on_error)

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        return await at_home(self.home, super().immediate_execute_command, *args, **options)

    async def reset(self) -> None:
        await at_home(self.home, super().reset)


class HomedClusterPipeline(HomeLoopBound, ClusterPipeline):  # type: ignore[misc]
    """A Cluster pipeline of a homed client: executing runs on the home loop."""

    async def execute(self, raise_on_error: bool = True,
                      allow_redirections: bool = True) -> Any:
        return await at_home(self.home, super().execute, raise_on_error, allow_redirections)


class HomedRedis(HomeLoopBound, Redis):  # type: ignore[misc]
    """A ``redis.asyncio.Redis`` whose commands run on its home loop."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """The command, to await; run on the home loop."""
        return at_home(self.home, super().execute_command, *args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Any:
        pipe = HomedPipeline(self.connection_pool, self.response_callbacks, transaction,
                             shard_hint)
        pipe.home = self.home
        return pipe

    def pubsub(self, **kwargs: Any) -> Any:
        if running_loop() is not self.home:
            raise RuntimeError(
                "a subscription reads on the loop that made it, and this client's "
                "connections live on another: use ext.asubscribe(...), which makes one "
                "for the running loop")
        return super().pubsub(**kwargs)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await at_home(self.home, super().aclose, close_connection_pool)


def homed(client: Any, home: asyncio.AbstractEventLoop) -> Any:
    """``client`` (built from a homed class) with its home set."""
    client.home = home
    return client
