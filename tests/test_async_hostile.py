"""The asyncio client under hostile conditions, against real servers: calls
cancelled mid-flight never get another call's reply, on the loop the app
serves on and through the hand-over from other loops; a loop that closes
with a call in flight leaks nothing; a Sentinel or Cluster master kill under
the deadline policy surfaces no error; a hung server bounds every call as it
bounds blocking ones; blocking and asyncio calls mix in one request; TLS."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import signal
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flask_core_redis.state import app_state

from .servers import run_concurrently, wait_until
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


# A loop that closes with a call in flight ------------------------------------------

def resource_warnings(action: Callable[[], Any]) -> list[str]:
    """The ResourceWarnings (an unclosed socket, transport or connection)
    raised while ``action`` runs and when everything it dropped is collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        action()
        gc.collect()
    return [str(warning.message) for warning in caught
            if issubclass(warning.category, ResourceWarning)]


def blocked_clients(server: Any, name: str) -> int:
    with server.client() as admin:
        return sum(1 for client in admin.client_list()
                   if client["name"] == name and "b" in client["flags"])


def test_view_loops_that_close_mid_command_leak_nothing(make_app, redis_server, key):
    """Async views that leave a BLPOP running as their loop closes, more of
    them than the pool holds: asgiref cancels each, which ends the command on
    the loop thread (its connection closed, nothing left blocked on the
    server); a loop closed without cancelling its task leaves the command to
    end there. No ResourceWarning, and the requests after them are served
    from the pool."""
    name = f"fcr-{uuid.uuid4().hex[:8]}"
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}",
                         "REDIS_MAX_CONNECTIONS": 2, "REDIS_POOL_TIMEOUT": 5000,
                         "REDIS_CLIENT_NAME": name})

    left: list[asyncio.Future[Any]] = []  # each ends with its view's loop

    @app.get("/leave")
    async def leave() -> str:
        left.append(asyncio.ensure_future(ext.async_client.blpop(f"{key}:never", 30)))
        await asyncio.to_thread(wait_until, lambda: blocked_clients(redis_server, name), 10,
                                "the BLPOP to block")
        return "left"

    @app.get("/read")
    async def read() -> str:
        return str(await ext.async_client.get(key))

    def requests() -> None:
        web = app.test_client()
        for _ in range(5):
            assert web.get("/leave").text == "left"
        _close_a_loop_mid_command(app, ext, key)
        redis_server.client().set(key, "served")
        assert web.get("/read").text == "served"

    assert resource_warnings(requests) == []
    wait_until(lambda: blocked_clients(redis_server, name) == 0, 10, "no BLPOP left")


def _close_a_loop_mid_command(app: Any, ext: Any, key: str) -> None:
    """A loop closed with a BLPOP in flight, its task never cancelled."""
    loop = asyncio.new_event_loop()
    with app.app_context():
        task = loop.create_task(ext.async_client.blpop(f"{key}:never", 0.2))
        loop.run_until_complete(asyncio.sleep(0.05))
    loop.close()
    del task, loop


def test_a_serving_loop_that_stops_mid_command_leaks_nothing(make_app, redis_server, key):
    """A loop the app serves on (Quart's) that stops serving and ends with a
    BLPOP in flight: no ResourceWarning, and a later loop is served."""
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}"})
    state = app_state(app, "REDIS")

    async def serve_and_stop() -> None:
        state.serve_on(asyncio.get_running_loop())
        blocking = asyncio.ensure_future(ext.async_client.blpop(f"{key}:never", 30))
        await asyncio.sleep(0.05)
        await state.stop_serving()
        assert not blocking.done()

    async def later() -> Any:
        await ext.async_client.set(key, "later")
        return await ext.async_client.get(key)

    def serve() -> None:
        with app.app_context():
            asyncio.run(serve_and_stop())
            assert asyncio.run(later()) == "later"

    assert resource_warnings(serve) == []


# Master kills under the deadline policy ----------------------------------------------

async def _write_through(client: Any, key: str, stop: asyncio.Event,
                         errors: list[Exception], written: list[int]) -> None:
    while not stop.is_set():
        try:
            written.append(await client.incr(key))
        except redis.RedisError as error:
            errors.append(error)
        await asyncio.sleep(0.01)


async def _ride_through(ext: Any, key: str, fault: Callable[[], None],
                        ) -> tuple[list[Exception], list[int], int]:
    """Errors that reached an asyncio writer of ``key`` while ``fault()`` ran,
    the writes it saw acknowledged once writes land again, and how many of
    them were acknowledged before the fault."""
    errors: list[Exception] = []
    written: list[int] = []
    stop = asyncio.Event()
    writer = asyncio.ensure_future(_write_through(ext.async_client, key, stop, errors, written))
    try:
        await asyncio.to_thread(wait_until, lambda: written, 10, "a first write")
        await asyncio.to_thread(fault)
        acknowledged = len(written)
        await asyncio.to_thread(wait_until, lambda: len(written) > acknowledged + 20, 30,
                                "writes to land again")
    finally:
        stop.set()
        await writer
    return errors, written, acknowledged


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_a_master_kill_under_an_async_writer_surfaces_no_error(request, make_app, key,
                                                               topology):
    """As the blocking client does (test_retry_deadline), through
    ext.async_client: a master killed under a writer, REDIS_RETRY_DEADLINE
    above the failover time: no error reaches the writer."""
    deployment = request.getfixturevalue(f"own_{topology}")
    app, ext = make_app({"REDIS_URL": deployment.url, "REDIS_CONNECT_TIMEOUT": 500,
                         "REDIS_RETRY_DEADLINE": 20_000})

    def kill_the_master() -> None:
        if topology == "sentinel":
            deployment.process_on(deployment.master_port()).kill()
        else:
            deployment.master_of(key).kill()

    with app.app_context():
        errors, written, before = asyncio.run(_ride_through(ext, key, kill_the_master))
    assert errors == [] and len(written) > 20
    # Replication is asynchronous: the last writes the old master acknowledged
    # may be lost with it, so the count may go back once, at the kill. After
    # it, every write lands after the one before.
    after = written[before:]
    assert after == sorted(after), "the writes did not land one after another"


# A hung server ------------------------------------------------------------------------

def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    try:
        call()
    except redis.RedisError as error:
        return time.monotonic() - started, error
    return time.monotonic() - started, None


def test_a_hung_server_bounds_every_async_call_as_it_bounds_blocking_ones(
        make_app, own_redis_server, key):
    """A server stopped by SIGSTOP, SOCKET_TIMEOUT and CONNECT_TIMEOUT 300 ms,
    one retry: a blocking GET, and asyncio GET, pipeline, transaction and a
    first call on a client with no connection yet, all at once, each raise
    a timeout or connection error within the bound of (MAX_RETRIES + 1)
    tries, each a read bounded by the socket timeout or a connect whose
    attempts are bounded by the connect timeout, and the delays between."""
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_SOCKET_TIMEOUT": 300, "REDIS_CONNECT_TIMEOUT": 300,
                         "REDIS_MAX_RETRIES": 1})

    def in_a_view(coroutine_function: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        with app.app_context():
            return asyncio.run(coroutine_function())

    async def pipeline(transaction: bool) -> Any:
        async with ext.async_client.pipeline(transaction=transaction) as pipe:
            return await pipe.get(key).incr(f"{key}:n").execute()

    def blocking_get() -> Any:
        with app.app_context():
            return ext.client.get(key)

    blocking_get()
    in_a_view(lambda: ext.async_client.get(key))  # warm connections
    own_redis_server.signal(signal.SIGSTOP)
    try:
        outcomes = run_concurrently(
            lambda: _timed(blocking_get),
            lambda: _timed(lambda: in_a_view(lambda: ext.async_client.get(key))),
            lambda: _timed(lambda: in_a_view(lambda: pipeline(False))),
            lambda: _timed(lambda: in_a_view(lambda: pipeline(True))),
            lambda: _timed(lambda: in_a_view(
                lambda: ext.get_async_client(decode_responses=False).get(key))))
    finally:
        own_redis_server.signal(signal.SIGCONT)
    tries, delays = 2, 0.05
    bound = tries * max(0.3, tries * 0.3 + delays) + delays
    for name, (seconds, error) in zip(["blocking", "get", "pipeline", "transaction", "cold"],
                                      outcomes, strict=True):
        assert isinstance(error, redis.TimeoutError | redis.ConnectionError), f"{name}: {error!r}"
        assert seconds <= bound + 0.5, f"{name}: {seconds:.2f} s, bound {bound:.2f} s"
    assert in_a_view(lambda: ext.async_client.get(key)) is None  # served again


# Blocking and asyncio calls in one request; TLS -----------------------------------------

@pytest.mark.parametrize("server", ["memory", "standalone"])
def test_blocking_and_async_calls_in_one_request_see_each_others_writes(
        make_app, request, key, server):
    url = (f"memory://{uuid.uuid4().hex}" if server == "memory"
           else f"redis://{request.getfixturevalue('redis_server').address}")
    app, ext = make_app({"REDIS_URL": url})

    @app.get("/mixed")
    async def mixed() -> dict[str, Any]:
        ext.client.set(f"{key}:sync", "from sync")
        await ext.async_client.set(f"{key}:async", "from async")
        async with ext.async_client.pipeline() as pipe:
            seen_by_async = await pipe.get(f"{key}:sync").incr(f"{key}:n").execute()
        with ext.client.pipeline() as pipe:
            seen_by_sync = pipe.get(f"{key}:async").incr(f"{key}:n").execute()
        return {"async": seen_by_async, "sync": seen_by_sync}

    assert app.test_client().get("/mixed").get_json() == {
        "async": ["from sync", 1], "sync": ["from async", 2]}


@pytest.mark.parametrize("home", list(HOMES))
def test_tls_commands_pipelines_and_transactions(make_app, tls_server, tls_files, key, home):
    app, ext = make_app({"REDIS_URL": f"rediss://localhost:{tls_server.port}",
                         **tls_files.config()})

    async def use() -> Any:
        client = ext.async_client
        await client.set(key, "over tls")
        async with client.pipeline(transaction=False) as pipe:
            piped = await pipe.get(key).incr(f"{key}:n").execute()
        async with client.pipeline() as pipe:
            transacted = await pipe.incr(f"{key}:n").get(key).execute()
        return piped, transacted

    runner = HOMES[home](app)
    try:
        assert runner.run(use()) == (["over tls", 1], [2, "over tls"])
    finally:
        runner.close()
