"""Operations written once, run by sync and async callers alike: the
plugins' (through :mod:`flask_core_redis.plugin_api`, which exports these
names) and the health check's.

An operation is a generator: it yields the I/O it needs as :class:`Step`
objects (a command, a pipeline, a pause, a call of the user's function) and
receives each step's result, or has the step's exception raised at the
``yield``. Everything else, key names, argument checks, scripts, reply
parsing, retries of its own, lives in the generator, once.
:func:`~flask_core_redis.plugin_api.run` drives it with a blocking client,
:func:`~flask_core_redis.plugin_api.arun` with a ``redis.asyncio`` one:

    def incr_op(key: str) -> Operation[int]:
        reply = yield Command("INCR", key)
        return int(reply)

    count = run(incr_op("hits"), client)           # sync
    count = await arun(incr_op("hits"), aclient)   # async

An exception a step raises, cancellation included, is thrown into the
generator, so its ``try``/``finally`` blocks run their own steps (releasing
a lock, say) before the exception leaves; a step that runs once a task is
cancelled still runs, once, and the cancellation is raised after it."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: An operation that ends with a ``T``: a generator of steps.
Operation = Generator["Step", Any, T]


class Step:
    """One piece of I/O an operation asks for, with both ways of doing it."""

    __slots__ = ()

    def run(self, client: Any) -> Any:
        """Do it with a blocking client."""
        raise NotImplementedError

    async def arun(self, client: Any) -> Any:
        """Do it with an asyncio client."""
        raise NotImplementedError


class Command(Step):
    """One command: ``Command("MGET", a, b, NEVER_DECODE=True)``; the keyword
    options go to redis-py's ``execute_command``."""

    __slots__ = ("args", "options")
    #: The command and its arguments.
    args: tuple[Any, ...]
    #: Keyword options for ``execute_command``.
    options: dict[str, Any]

    def __init__(self, *args: Any, **options: Any) -> None:
        self.args, self.options = args, options

    def __repr__(self) -> str:
        return f"<Command {self.args[0]!r}>"

    def run(self, client: Any) -> Any:
        """Do it with a blocking client."""
        return client.execute_command(*self.args, **self.options)

    async def arun(self, client: Any) -> Any:
        """Do it with an asyncio client."""
        return await client.execute_command(*self.args, **self.options)


class Pipeline(Step):
    """Several commands in one round trip (without MULTI; on a Cluster one
    per master); their replies in order, an error reply as the exception."""

    __slots__ = ("commands",)
    #: The commands, in order.
    commands: Sequence[Command]

    def __init__(self, commands: Sequence[Command]) -> None:
        self.commands = commands

    def _stacked(self, client: Any) -> Any:
        pipe = client.pipeline(transaction=False)
        for command in self.commands:
            pipe.execute_command(*command.args, **command.options)
        return pipe

    def run(self, client: Any) -> Any:
        """Do it with a blocking client."""
        return self._stacked(client).execute(raise_on_error=False)

    async def arun(self, client: Any) -> Any:
        """Do it with an asyncio client."""
        return await self._stacked(client).execute(raise_on_error=False)


class Pause(Step):
    """Wait ``seconds`` (``time.sleep``, or ``asyncio.sleep`` in a coroutine)."""

    __slots__ = ("seconds",)
    #: How long to wait.
    seconds: float

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, client: Any) -> None:
        """Do it with a blocking client."""
        time.sleep(self.seconds)

    async def arun(self, client: Any) -> None:
        """Do it with an asyncio client."""
        await asyncio.sleep(self.seconds)


class Call(Step):
    """Call ``function(*args)``, the user's computation say; an async caller
    awaits what it returns if that is awaitable, so a coroutine function
    serves async callers and a plain one both."""

    __slots__ = ("args", "function")
    #: What to call.
    function: Callable[..., Any]
    #: Its arguments.
    args: tuple[Any, ...]

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self.function, self.args = function, args

    def run(self, client: Any) -> Any:
        """Do it with a blocking client."""
        result = self.function(*self.args)
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # no "never awaited" warning on top of the error
            raise TypeError(
                f"{getattr(self.function, '__qualname__', self.function)!r} returned an "
                "awaitable to a synchronous caller: use the method's async form "
                "(its name with an 'a' in front: aget_or_set ...) from async code")
        return result

    async def arun(self, client: Any) -> Any:
        """Do it with an asyncio client."""
        result = self.function(*self.args)
        if inspect.isawaitable(result):
            result = await result
        return result


class CallRenewing(Call):
    """Call ``function(*args)`` as :class:`Call` does and, while it runs, the
    operation ``renew()`` every ``every`` seconds, until the call ends or a
    renewal returns False: a computation that keeps its lock alive. Renewals
    run beside the call, on the same client: in a thread of their own for a
    blocking client, in a task for an asyncio one; in the caller's context
    either way (a tracing span current in it is current in them)."""

    __slots__ = ("every", "renew")
    #: Makes one renewal, an operation whose result says whether to go on.
    renew: Callable[[], Operation[bool]]
    #: Seconds between renewals.
    every: float

    def __init__(self, function: Callable[..., Any], *args: Any,
                 renew: Callable[[], Operation[bool]], every: float) -> None:
        super().__init__(function, *args)
        self.renew, self.every = renew, every

    def run(self, client: Any) -> Any:
        """Do it with a blocking client."""
        done = threading.Event()

        def keep() -> None:
            while not done.wait(self.every) and run(self.renew(), client):
                pass

        threading.Thread(target=contextvars.copy_context().run, args=[keep],
                         name="operation-renewing", daemon=True).start()
        try:
            return super().run(client)
        finally:
            done.set()

    async def arun(self, client: Any) -> Any:
        """Do it with an asyncio client."""
        async def keep() -> None:
            while True:
                await asyncio.sleep(self.every)
                if not await arun(self.renew(), client):
                    return

        keeper = asyncio.ensure_future(keep())
        try:
            return await super().arun(client)
        finally:
            keeper.cancel()
            await asyncio.wait([keeper])  # ended before the operation goes on


class _Driver:
    """One operation on its way: the step it asks for next, given what the
    last one returned or raised."""

    __slots__ = ("operation", "result", "resume", "value")

    def __init__(self, operation: Operation[Any]) -> None:
        self.operation = operation
        self.resume: Callable[[Any], Step] = operation.send
        self.value: Any = None
        self.result: Any = None

    def next_step(self) -> Step | None:
        """The next step; None once the operation has ended (its value in
        :attr:`result`)."""
        try:
            return self.resume(self.value)
        except StopIteration as done:
            self.result = done.value
            return None

    def gave(self, value: Any) -> None:
        self.value, self.resume = value, self.operation.send

    def raised(self, error: BaseException) -> None:
        """The operation decides, in its own try blocks, what an error means."""
        self.value, self.resume = error, self.operation.throw

    def do(self, step: Step, client: Any) -> None:
        """Run ``step`` with the blocking ``client``."""
        try:
            self.gave(step.run(client))
        except BaseException as error:
            self.raised(error)


def run(operation: Operation[T], client: Any) -> T:
    """Drive ``operation`` to its end with the blocking ``client``."""
    driver = _Driver(operation)
    while (step := driver.next_step()) is not None:
        driver.do(step, client)
    return driver.result  # type: ignore[no-any-return]


async def arun(operation: Operation[T], client: Any) -> T:
    """Drive ``operation`` to its end with the asyncio ``client``."""
    driver = _Driver(operation)
    while (step := driver.next_step()) is not None:
        try:
            driver.gave(await step.arun(client))
        except BaseException as error:
            driver.raised(error)
    return driver.result  # type: ignore[no-any-return]
