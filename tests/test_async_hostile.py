"""The asyncio client under hostile conditions, against real servers: calls
cancelled mid-flight never get another call's reply, on the loop the app
serves on and through the hand-over from other loops; a loop that closes
with a call in flight leaks nothing; a Sentinel or Cluster master kill under
the deadline policy surfaces no error; a hung server bounds every call as it
bounds blocking ones; blocking and asyncio calls mix in one request; TLS."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flask_core_redis.state import app_state

from .servers import wait_until
from .tcp_proxy import FaultProxy

pytestmark = pytest.mark.integration

#: How long the proxy holds every reply: long enough for a cancellation to
#: land while a command waits for its pooled connection, its connect, its
#: send or its reply.
LATENCY = 0.002
KEYS = 12
POOL_SIZE = 4


# Calls cancelled mid-flight ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Call:
    """One call of an interleaving: what it sends, and how it is interrupted
    (``cancel``: task.cancel() after ``after`` seconds; ``timeout``:
    asyncio.wait_for with that timeout; ``none``)."""

    kind: str
    first: int
    second: int
    interruption: str
    after: float


CALLS = st.lists(st.builds(
    Call, kind=st.sampled_from(["get", "incr", "pipeline", "transaction"]),
    first=st.integers(0, KEYS - 1), second=st.integers(0, KEYS - 1),
    interruption=st.sampled_from(["none", "cancel", "timeout"]),
    after=st.floats(0, 4 * LATENCY)), min_size=40, max_size=80)


class Values:
    """Keys that each hold a value no other key, and no other reply, has."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.token = uuid.uuid4().hex
        self.counter = f"{prefix}:counter"

    def key(self, index: int) -> str:
        return f"{self.prefix}:{index}"

    def value(self, index: int) -> str:
        return f"value {index} of {self.token}"

    def write(self, client: redis.Redis) -> None:
        client.mset({self.key(index): self.value(index) for index in range(KEYS)})


class Interleaving:
    """Runs calls at once on one client, each checking its own reply."""

    def __init__(self, client: Any, values: Values) -> None:
        self.client = client
        self.values = values
        self.increments: set[int] = set()

    async def call(self, call: Call) -> None:
        values = self.values
        if call.kind == "get":
            assert await self.client.get(values.key(call.first)) == values.value(call.first)
        elif call.kind == "incr":
            count = await self.client.incr(values.counter)
            assert isinstance(count, int) and count not in self.increments, count
            self.increments.add(count)
        else:
            async with self.client.pipeline(transaction=call.kind == "transaction") as pipe:
                pipe.get(values.key(call.first)).get(values.key(call.second))
                replies = await pipe.execute()
            assert replies == [values.value(call.first), values.value(call.second)]

    def _start(self, call: Call) -> asyncio.Future[None]:
        if call.interruption == "timeout":
            return asyncio.ensure_future(asyncio.wait_for(self.call(call), call.after))
        task = asyncio.ensure_future(self.call(call))
        if call.interruption == "cancel":
            asyncio.get_running_loop().call_later(call.after, task.cancel)
        return task

    async def run(self, calls: list[Call]) -> Counter[str]:
        """How many calls completed (each with its own reply) and how many were
        interrupted; any other outcome is raised."""
        outcomes = await asyncio.gather(*map(self._start, calls), return_exceptions=True)
        tally: Counter[str] = Counter()
        for outcome in outcomes:
            if outcome is None:
                tally["completed"] += 1
            elif isinstance(outcome, asyncio.CancelledError | asyncio.TimeoutError):
                tally["interrupted"] += 1
            else:
                raise outcome
        return tally


class ServingLoop:
    """Calls made from one loop that the app serves on, as Quart's: the
    clients asked for there are homed on it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app_state(app, "REDIS")
        self.loop = asyncio.new_event_loop()
        self.run(self._serve())

    async def _serve(self) -> None:
        self.state.serve_on(asyncio.get_running_loop())

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        with self.app.app_context():
            return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.state.stop_serving())
        self.loop.close()


class ViewLoops:
    """Calls made from a new loop each time, as Flask's async views are: the
    clients live on the extension's loop thread, each call handed to it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        with self.app.app_context():
            return asyncio.run(coroutine)

    def close(self) -> None:
        pass


HOMES = {"serving loop": ServingLoop, "view loops": ViewLoops}


@pytest.fixture
def slow_replies(redis_server: Any) -> Iterator[FaultProxy]:
    """The session's server behind a proxy that holds every reply LATENCY."""
    with FaultProxy(redis_server.port) as proxy:
        proxy.latency = LATENCY
        yield proxy


def settled(pool: Any) -> bool:
    """Every connection back in the pool, none of them twice (redis-py's
    asyncio pool: ``_in_use_connections``, ``_available_connections``)."""
    available = pool._available_connections
    return not pool._in_use_connections and len({*map(id, available)}) == len(available)


@pytest.mark.parametrize("home", list(HOMES))
def test_a_cancelled_call_never_gets_another_calls_reply(make_app, redis_server,
                                                         slow_replies, key, home):
    """Thousands of GETs, INCRs, pipelines and transactions, 40 to 80 at a
    time on a pool of POOL_SIZE connections that waits for a free one, each
    reply held by the proxy, cancelled at random points by task.cancel() and
    by asyncio.wait_for: every call that completes gets its own reply, no
    other error reaches any caller, and afterwards every connection is back
    in the pool once. Through the hand-over, a cancelled caller got control
    back while its call still ran on the loop thread: a pipeline's ``async
    with`` gave the connection back a second time, and two calls then
    shared it (wrong replies, "readuntil() called while another coroutine is
    already waiting")."""
    app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{slow_replies.port}",
                         "REDIS_MAX_CONNECTIONS": POOL_SIZE, "REDIS_POOL_TIMEOUT": 10_000})
    values = Values(key)
    with redis_server.client() as admin:
        values.write(admin)
    runner = HOMES[home](app)
    tally: Counter[str] = Counter()
    increments: set[int] = set()

    async def interleave(calls: list[Call]) -> Counter[str]:
        interleaving = Interleaving(ext.async_client, values)
        interleaving.increments = increments
        return await interleaving.run(calls)

    @settings(max_examples=60, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow])
    @given(calls=CALLS)
    def interleavings(calls: list[Call]) -> None:
        tally.update(runner.run(interleave(calls)))

    try:
        interleavings()
        client = runner.run(_shared_client(ext))
        wait_until(lambda: settled(client.connection_pool), 10, "the connections to settle")
        every = [Call("pipeline", index, KEYS - 1 - index, "none", 0) for index in range(KEYS)]
        assert runner.run(interleave(every)) == {"completed": KEYS}
    finally:
        runner.close()
    assert tally["completed"] > 500 and tally["interrupted"] > 500, tally


async def _shared_client(ext: Any) -> Any:
    return ext.async_client


def test_a_call_cancelled_before_the_loop_thread_starts_it_ends_before_its_caller(
        make_app, redis_server, key):
    """A pipeline whose caller is cancelled while the loop thread is busy
    with other work, before it has started the pipeline, and calls made
    meanwhile: the caller gets CancelledError once the pipeline has ended
    there, and every other call its own reply. The caller's ``async with``
    gave the connection back while the pipeline, started after all, still
    waited for its reply on it, and the next call read on it too ("readuntil()
    called while another coroutine is already waiting")."""
    values = Values(key)
    with redis_server.client() as admin:
        values.write(admin)
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}"})
    outcome, others = ViewLoops(app).run(_cancelled_while_the_loop_thread_is_busy(ext, values))
    assert isinstance(outcome, asyncio.CancelledError), repr(outcome)
    assert others == [values.value(index) for index in range(KEYS)]


async def _cancelled_while_the_loop_thread_is_busy(ext: Any, values: Values,
                                                   ) -> tuple[BaseException, list[Any]]:
    client = ext.async_client
    await client.get(values.key(0))  # a connection open and idle

    async def read_in_a_pipeline() -> Any:
        async with client.pipeline(transaction=False) as pipe:
            return await pipe.get(values.key(0)).execute()

    client.home.call_soon_threadsafe(time.sleep, 0.2)  # busy: the calls queue behind
    pipeline = asyncio.ensure_future(read_in_a_pipeline())
    await asyncio.sleep(0)  # handed over
    pipeline.cancel()
    await asyncio.sleep(0)  # the pipeline's caller leaves its ``async with``
    others = asyncio.gather(*(client.get(values.key(index)) for index in range(KEYS)),
                            return_exceptions=True)
    outcome, = await asyncio.gather(pipeline, return_exceptions=True)
    return outcome, await others
