"""The cache from async code: aget, aset, aget_or_set ... and ``@cached`` on
``async def`` functions and views, with the guarantees of the sync forms
(they run the same operations): fail-open reads, raising deletions, one
computation for sync and async callers of one key, a lock kept while
computing and released when the caller is cancelled."""

import asyncio
import inspect
import logging
import signal
import threading
import time

import pytest
import redis

from flask_core_redis.plugin_api import CallRenewing, arun, run
from flask_core_redis.plugins.cache.scripts import CLAIM

from .servers import wait_until
from .tcp_proxy import FaultProxy


def in_app(app, coroutine_function):
    """Run ``coroutine_function()`` in a fresh event loop, in ``app``'s context,
    as Flask runs an async view."""
    with app.app_context():
        return asyncio.run(coroutine_function())


async def until(condition, what, timeout=10):
    """Poll ``condition`` from async code until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def test_the_async_forms_read_and_write_what_the_sync_ones_do(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        ext.cache.set("sync", {"by": "get"})

    async def scenario():
        cache = ext.cache
        assert await cache.aget("sync") == {"by": "get"}
        assert await cache.aget("missing", "fallback") == "fallback"
        await cache.aset("async", [1, "é"], ttl=60)
        await cache.aset_many({"a": 1, "b": None}, namespace="other")
        assert await cache.aget_many(["a", "b", "c"], namespace="other") == {"a": 1, "b": None}
        assert await cache.aget_many([]) == {}
        assert await cache.adelete("sync") is True
        assert await cache.adelete("sync") is False
        assert await cache.ainvalidate_namespace("other") == 1
        assert await cache.aget_many(["a", "b"], namespace="other") == {}

    in_app(app, scenario)
    with app.app_context():
        assert ext.cache.get("async") == [1, "é"]
        assert ext.cache.get("sync", "gone") == "gone"


def test_async_forms_refuse_what_the_sync_ones_refuse(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})

    async def scenario():
        with pytest.raises(TypeError, match="JSON-serializable"):
            await ext.cache.aset("k", object())
        with pytest.raises(ValueError, match="ttl must be a positive number"):
            await ext.cache.aget_or_set("k", lambda: 1, ttl=0)
        with pytest.raises(ValueError, match="namespace must be a non-empty string"):
            await ext.cache.aget("k", namespace="")

    in_app(app, scenario)


def test_aget_or_set_awaits_a_coroutine_function_and_caches_its_result(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    runs = []

    async def load():
        runs.append(1)
        await asyncio.sleep(0)
        return {"rows": len(runs)}

    async def scenario():
        first = await ext.cache.aget_or_set("report", load, ttl=60)
        again = await ext.cache.aget_or_set("report", load, ttl=60)
        plain = await ext.cache.aget_or_set("plain", lambda: "from a plain function")
        return first, again, plain

    assert in_app(app, scenario) == ({"rows": 1}, {"rows": 1}, "from a plain function")
    assert runs == [1]
    with app.app_context():
        assert ext.cache.get_or_set("report", lambda: "not run") == {"rows": 1}


@pytest.fixture
def claims(monkeypatch):
    """When each lock claim is sent (time.monotonic()), from now on."""
    sent = []
    claim = CLAIM.operation

    def counting(*args, **options):
        sent.append(time.monotonic())
        return claim(*args, **options)

    monkeypatch.setattr(CLAIM, "operation", counting)
    return sent


def test_a_sync_and_an_async_caller_of_one_key_share_one_computation(
        make_app, memory_url, claims):
    """A thread in get_or_set and a coroutine in aget_or_set at once: the
    Redis lock lets one compute, and the computation ends only once both
    have claimed the lock, so the other one waits for its value."""
    app, ext = make_app({"REDIS_URL": memory_url})
    runs = []

    def compute():
        runs.append("sync")
        wait_until(lambda: len(claims) >= 2, 10, "both callers to claim the lock")
        return "computed"

    async def acompute():
        runs.append("async")
        await until(lambda: len(claims) >= 2, "both callers to claim the lock")
        return "computed"

    results = []

    def sync_caller():
        with app.app_context():
            results.append(ext.cache.get_or_set("shared", compute, ttl=60))

    thread = threading.Thread(target=sync_caller)
    thread.start()
    results.append(in_app(app, lambda: ext.cache.aget_or_set("shared", acompute, ttl=60)))
    thread.join(30)
    assert results == ["computed", "computed"]
    assert len(runs) == 1, runs


def test_a_cancelled_caller_releases_its_lock(make_app, memory_url):
    """The lock goes when the task computing is cancelled, so the next
    caller computes at once instead of waiting out CACHE_LOCK_TIMEOUT."""
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_CACHE_LOCK_TIMEOUT": 3600})

    async def scenario():
        lock = ext.cache._keys("default").names("k").lock
        client = ext.async_client
        started = asyncio.Event()

        async def forever():
            started.set()
            await asyncio.Event().wait()

        task = asyncio.ensure_future(ext.cache.aget_or_set("k", forever))
        await started.wait()
        assert await client.exists(lock) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await client.exists(lock) == 0
        return await asyncio.wait_for(ext.cache.aget_or_set("k", lambda: "next"), 10)

    assert in_app(app, scenario) == "next"


def counting_renewals(renewals, keep_going=True):
    """A renewal operation (no step) that records the thread it runs in."""
    def renew():
        renewals.append(threading.current_thread())
        return keep_going
        yield

    return renew


def one_step(step):
    return (yield step)


def test_call_renewing_renews_while_the_call_runs_and_stops_after(make_app, memory_url):
    """Sync: a thread renews; async: a task. Each call lasts until it has
    seen two renewals; the renewing ends with the call."""
    app, ext = make_app({"REDIS_URL": memory_url})
    renewals = []
    step = CallRenewing(lambda: wait_until(lambda: len(renewals) >= 2, 10, "renewals"),
                        renew=counting_renewals(renewals), every=0.01)
    with app.app_context():
        assert run(one_step(step), ext.client) is True
    renewals[0].join(10)
    assert not renewals[0].is_alive()

    async def scenario():
        renewals.clear()

        async def call():
            await until(lambda: len(renewals) >= 2, "renewals")
            return True

        async_step = CallRenewing(call, renew=counting_renewals(renewals), every=0.01)
        assert await arun(one_step(async_step), ext.async_client) is True
        assert asyncio.all_tasks() == {asyncio.current_task()}  # the renewing task ended

    in_app(app, scenario)


def test_call_renewing_stops_at_a_renewal_that_says_no(make_app, memory_url):
    """The lock is not ours any more: the thread renewing it ends at once,
    though the call goes on."""
    renewals = []

    def call():
        wait_until(lambda: renewals and not renewals[0].is_alive(), 10,
                   "the renewing thread to end")
        return True

    step = CallRenewing(call, renew=counting_renewals(renewals, keep_going=False), every=0.01)
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        assert run(one_step(step), ext.client) is True
    assert len(renewals) == 1


def test_an_async_computation_that_outlives_the_lock_timeout_keeps_its_lock(
        make_app, memory_url, claims):
    """The renewing task extends the lock while the coroutine computes: a
    second caller that claims after the lock timeout still waits."""
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_CACHE_LOCK_TIMEOUT": 1})
    runs = []

    async def slow():
        runs.append(1)
        started = time.monotonic()
        await until(lambda: len(claims) >= 2 and claims[-1] - started > 1.2,
                    "a second claim after the lock timeout")
        return "slow"

    async def scenario():
        first = asyncio.ensure_future(ext.cache.aget_or_set("k", slow))
        await until(lambda: runs, "the computation to start")
        await asyncio.sleep(1.3)  # the lock would have expired unrenewed
        second = await ext.cache.aget_or_set("k", slow)
        return await first, second

    assert in_app(app, scenario) == ("slow", "slow")
    assert runs == [1]


def test_cached_wraps_async_functions_with_an_async_wrapper(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    runs = []

    @ext.cache.cached(ttl=60, key="user:{user_id}")
    async def user(user_id):
        runs.append(user_id)
        await asyncio.sleep(0)
        return {"id": user_id}

    assert inspect.iscoroutinefunction(user)

    async def scenario():
        return [await user(7), await user(7), await user(8)]

    assert in_app(app, scenario) == [{"id": 7}, {"id": 7}, {"id": 8}]
    assert runs == [7, 8]
    with app.app_context():
        assert ext.cache.get("user:7") == {"id": 7}


def test_an_async_view_under_cached_answers_from_the_cache(make_app, memory_url):
    pytest.importorskip("asgiref")  # Flask runs async views with it (flask[async])
    app, ext = make_app({"REDIS_URL": memory_url})
    runs = []

    @app.get("/report")
    @ext.cache.cached(ttl=60)
    async def report():
        runs.append(1)
        await asyncio.sleep(0)
        return {"rows": 3}

    client = app.test_client()
    responses = [client.get("/report") for _ in range(2)]
    assert [response.status_code for response in responses] == [200, 200]
    assert [response.get_json() for response in responses] == [{"rows": 3}] * 2
    assert runs == [1]


def test_async_forms_fail_open_and_deletions_raise_when_redis_is_down(make_app, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0})

    async def scenario():
        cache = ext.cache
        assert await cache.aget("k", "default") == "default"
        assert await cache.aget_many(["k"]) == {}
        await cache.aset("k", 1)
        assert await cache.aget_or_set("k", lambda: "computed") == "computed"
        with pytest.raises(redis.ConnectionError):
            await cache.adelete("k")
        with pytest.raises(redis.ConnectionError):
            await cache.ainvalidate_namespace("default")

    in_app(app, scenario)
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING
                and record.getMessage().startswith("cache: Redis unavailable")]
    assert len(warnings) == 1


@pytest.mark.integration
def test_a_server_stopped_by_sigstop_bounds_async_reads_by_the_connect_timeout(
        make_app, own_redis_server):
    """REDIS_SOCKET_TIMEOUT unset, as by default: the async forms use the
    fail-fast client, whose reads wait at most CONNECT_TIMEOUT, so a hung
    server fails open even on a warm connection instead of holding the request."""
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CONNECT_TIMEOUT": 200, "REDIS_MAX_RETRIES": 0,
                         "REDIS_CACHE_BREAKER_SECONDS": 600})

    async def scenario():
        await ext.cache.aset("k", "cached")
        assert await ext.cache.aget("k") == "cached"  # a warm pooled connection
        own_redis_server.signal(signal.SIGSTOP)
        try:
            read = await asyncio.wait_for(ext.cache.aget("k", "miss"), 10)
            with pytest.raises(redis.TimeoutError):
                await asyncio.wait_for(ext.cache.adelete("k"), 10)
        finally:
            own_redis_server.signal(signal.SIGCONT)
        return read

    assert in_app(app, scenario) == "miss"


def test_a_coroutine_function_given_to_the_sync_form_is_refused_and_frees_the_lock(
        make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_CACHE_LOCK_TIMEOUT": 3600})

    async def load():
        return 1

    with app.app_context():
        with pytest.raises(TypeError, match="aget_or_set"):
            ext.cache.get_or_set("k", load)
        assert ext.cache.get_or_set("k", lambda: "computed at once") == "computed at once"


def test_the_breaker_opened_by_a_sync_call_spares_async_calls(make_app):
    """One breaker for both forms: once a sync read met the outage, an async
    read within CACHE_BREAKER_SECONDS gets its fallback without trying Redis."""
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0,
                         "REDIS_CACHE_BREAKER_SECONDS": 600})
    tried = []
    with app.app_context():
        assert ext.cache.get("k", "miss") == "miss"  # opens the breaker
        ext.cache._aclient._resolve = lambda: tried.append(1)

    async def scenario():
        return await ext.cache.aget("k", "miss"), await ext.cache.aget_or_set("k", lambda: 2)

    assert in_app(app, scenario) == ("miss", 2)
    assert tried == []


@pytest.mark.parametrize("mode", [pytest.param("standalone", marks=pytest.mark.integration),
                                  pytest.param("cluster", marks=pytest.mark.integration)])
def test_async_forms_on_a_server(mode, mode_app):
    """Every async form on a real server and on a Cluster (a namespace's keys
    in one slot), with the sync forms reading what they wrote."""
    app, ext = mode_app()
    runs = []

    async def load():
        runs.append(1)
        await asyncio.sleep(0)
        return {"n": 1}

    async def scenario():
        cache = ext.cache
        await cache.aset_many({f"k{n}": n for n in range(5)}, ttl=60, namespace="ns")
        await cache.aset("one", "é")
        assert await cache.aget("one") == "é"
        assert await cache.aget_many(["k1", "k4", "none"], namespace="ns") == {"k1": 1, "k4": 4}
        results = await asyncio.gather(*[cache.aget_or_set("computed", load, ttl=60)
                                         for _ in range(5)])
        assert results == [{"n": 1}] * 5
        assert await cache.adelete("one") is True
        assert await cache.ainvalidate_namespace("ns") == 1
        assert await cache.aget_many(["k1"], namespace="ns") == {}

    in_app(app, scenario)
    assert runs == [1]
    with app.app_context():
        assert ext.cache.get("computed") == {"n": 1}
        assert ext.cache.get("one", "gone") == "gone"


@pytest.mark.integration
def test_an_async_claim_whose_reply_is_lost_does_not_wait_on_its_own_lock(
        make_app, own_redis_server):
    """The reply to aget_or_set's lock claim is lost after the script took the
    lock, and the retry policy sends it again: the caller computes at once
    instead of waiting out its own lock (an hour here)."""
    with FaultProxy(own_redis_server.port) as proxy:
        app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{proxy.port}",
                             "REDIS_SOCKET_TIMEOUT": 200, "REDIS_MAX_RETRIES": 1,
                             "REDIS_CACHE_LOCK_TIMEOUT": 3600})
        computed = []

        async def scenario():
            assert await ext.cache.aget_or_set("warm-up", lambda: 0) == 0  # script loaded
            proxy.lose_reply_to(CLAIM.sha)
            value = await asyncio.wait_for(ext.cache.aget_or_set(
                "report", lambda: computed.append(1) or {"rows": 3}), 10)
            return value, await ext.cache.aget("report")

        assert in_app(app, scenario) == ({"rows": 3}, {"rows": 3})
        assert proxy.replies_lost == 1 and computed == [1]
