"""REDIS_OTEL: every instrument records what it names, against real servers,
from sync and async callers; spans nest the command spans of an instrumented
redis-py; nothing is recorded with the switch off."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from flask_core_redis.plugins.otp import OtpRateLimited, OtpUnavailable
from flask_core_redis.plugins.presence import TooManyConnections

from .servers import free_port, wait_until

pytestmark = pytest.mark.integration

OTEL = {"REDIS_OTEL": True}
CALLERS = ["sync", "async"]


def call(caller: str, plugin: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``plugin.name(...)``, or its async form ``a<name>`` run to its end."""
    if caller == "sync":
        return getattr(plugin, name)(*args, **kwargs)
    return asyncio.run(getattr(plugin, f"a{name}")(*args, **kwargs))


@pytest.fixture(params=["standalone", "sentinel", "cluster"])
def server_url(request: pytest.FixtureRequest) -> str:
    """One redis-server, Sentinel, or the Cluster."""
    if request.param == "standalone":
        return f"redis://{request.getfixturevalue('redis_server').address}"
    return str(request.getfixturevalue("cluster").url)


def app_on(make_app: Any, url: str, **config: Any) -> tuple[Any, Any]:
    return make_app({"REDIS_URL": url, "REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}:",
                     **OTEL, **config})


# The connection ----------------------------------------------------------------

@pytest.mark.parametrize("caller", CALLERS)
def test_connects_pools_and_health_checks_are_recorded(otel, make_app, redis_server,
                                                        caller):
    app, ext = app_on(make_app, f"redis://{redis_server.address}")
    with app.app_context():
        if caller == "sync":
            ext.client.ping()
            assert ext.health()["ok"]
        else:
            async def use() -> None:
                await ext.async_client.ping()
                assert (await ext.ahealth())["ok"]
            asyncio.run(use())
        kind = "shared" if caller == "sync" else "async:shared"
        assert otel.total("flask_core_redis.connection.events", event="connect",
                          registration="REDIS") >= 1
        assert otel.total("flask_core_redis.connection.pool.connections", client=kind,
                          state="idle") >= 1
        assert otel.total("flask_core_redis.connection.health.duration", ok=True) == 1
        assert otel.total("flask_core_redis.connection.health.status") == 1


def test_connections_in_use_are_counted_as_used(otel, make_app, redis_server, key):
    app, ext = app_on(make_app, f"redis://{redis_server.address}")
    with app.app_context():
        client = ext.client
        blocked = threading.Thread(target=client.blpop, args=[key, 5])
        blocked.start()
        try:
            wait_until(lambda: otel.total("flask_core_redis.connection.pool.connections",
                                          client="shared", state="used") == 1, 5,
                       "the blocked connection to count as used")
        finally:
            client.rpush(key, "x")
            blocked.join()
        assert otel.total("flask_core_redis.connection.pool.connections", client="shared",
                          state="used") == 0


@pytest.mark.parametrize("caller", CALLERS)
def test_retries_are_counted_by_error_and_outcome(otel, make_app, own_redis_server, key,
                                                   caller):
    app, ext = app_on(make_app, f"redis://{own_redis_server.address}", REDIS_MAX_RETRIES=5,
                      REDIS_CONNECT_TIMEOUT=300, REDIS_SOCKET_TIMEOUT=200)
    retries = "flask_core_redis.connection.retries"
    with app.app_context():
        def command(*args: Any) -> Any:
            if caller == "sync":
                return ext.client.execute_command(*args)

            async def run() -> Any:
                return await ext.async_client.execute_command(*args)
            return asyncio.run(run())

        command("SET", key, "1")
        # A server that hangs a moment: the first try times out, a retry
        # finds it answering again.
        own_redis_server.signal(signal.SIGSTOP)
        threading.Timer(0.3, own_redis_server.signal, [signal.SIGCONT]).start()
        assert command("GET", key) == "1"
        assert otel.total(retries, outcome="recovered", **{"error.type": "TimeoutError"}) >= 1
        own_redis_server.stop()
        with pytest.raises(redis.ConnectionError):
            command("GET", key)
        assert otel.total(retries, outcome="gave_up") == 5  # MAX_RETRIES, then it gave up
        assert otel.total("flask_core_redis.connection.events", event="retry") >= 6


def test_a_sentinel_failover_is_counted(otel, make_app, own_sentinel, key):
    app, ext = make_app({"REDIS_URL": own_sentinel.url, "REDIS_CONNECT_TIMEOUT": 500,
                         "REDIS_RETRY_DEADLINE": 30_000, **OTEL})
    old_port = own_sentinel.master_port()
    with app.app_context():
        ext.client.incr(key)
        with own_sentinel.sentinels[0].client() as sentinel_admin:
            sentinel_admin.execute_command("SENTINEL", "FAILOVER", own_sentinel.master_name)
        wait_until(lambda: own_sentinel.master_port() != old_port, 30, "the promotion")
        wait_until(lambda: otel.total("flask_core_redis.connection.failovers",
                                      topology="sentinel", outcome="moved") >= 1, 30,
                   "the move to be counted")
        ext.client.incr(key)
    assert otel.total("flask_core_redis.connection.events", event="failover") >= 1


def test_a_cluster_failover_is_counted_by_sync_and_async_clients(otel, make_app, own_cluster):
    key = f"failover:{uuid.uuid4().hex}"
    app, ext = make_app({"REDIS_URL": own_cluster.url, "REDIS_CONNECT_TIMEOUT": 500, **OTEL})
    failovers = "flask_core_redis.connection.failovers"
    with app.app_context():
        loop = asyncio.new_event_loop()
        try:
            ext.client.set(key, "before")
            loop.run_until_complete(ext.async_client.set(key, "before"))
            own_cluster.master_of(key).kill()
            for write in (lambda: ext.client.set(key, "after"),
                          lambda: loop.run_until_complete(ext.async_client.set(key, "after"))):
                wait_until(lambda write=write: _succeeds(write), 30, "writes to resume")
        finally:
            loop.run_until_complete(ext.async_client.aclose())
            loop.close()
    assert otel.total(failovers, topology="cluster", outcome="moved") >= 2


def _succeeds(write: Any) -> bool:
    try:
        write()
    except redis.RedisError:
        return False
    return True


# The cache -------------------------------------------------------------------------

@pytest.mark.parametrize("caller", CALLERS)
def test_cache_hits_misses_invalidations_and_recomputations(otel, make_app, server_url,
                                                             caller):
    app, ext = app_on(make_app, server_url, REDIS_CACHE_OTEL_NAMESPACES="shop")
    requests = "flask_core_redis.cache.requests"
    with app.app_context():
        cache = ext.cache
        call(caller, cache, "set", "k", "v", namespace="shop")
        assert call(caller, cache, "get", "k", namespace="shop") == "v"
        assert call(caller, cache, "get", "absent", namespace="shop") is None
        assert call(caller, cache, "get", "k", namespace="undeclared") is None
        assert call(caller, cache, "get_or_set", "g", lambda: 1) == 1
        assert call(caller, cache, "get_or_set", "g", lambda: 2) == 1
        call(caller, cache, "delete", "k", namespace="shop")
        call(caller, cache, "invalidate_namespace", "shop")
    assert otel.total(requests, result="hit", namespace="shop") == 1
    assert otel.total(requests, result="miss", namespace="shop") == 1
    assert otel.total(requests, result="miss", namespace="other") == 1
    # get_or_set: the first computed (a miss), the second found the value.
    assert otel.total(requests, result="miss", namespace="default") == 1
    assert otel.total(requests, result="hit", namespace="default") == 1
    assert otel.total("flask_core_redis.cache.recomputations", reason="missing",
                      namespace="default") == 1
    assert otel.total("flask_core_redis.cache.invalidations", scope="key") == 1
    assert otel.total("flask_core_redis.cache.invalidations", scope="namespace") == 1
    computed, served = otel.spans("flask_core_redis.cache.get_or_set")
    assert (computed.attributes["result"], computed.attributes["computed"]) == ("miss", True)
    assert (served.attributes["result"], served.attributes["computed"]) == ("hit", False)
    assert [span.attributes["result"] for span in otel.spans("flask_core_redis.cache.get")] \
        == ["hit", "miss", "miss"]


@pytest.mark.parametrize("caller", CALLERS)
def test_single_flight_waits_are_timed(otel, make_app, redis_server, caller):
    app, ext = app_on(make_app, f"redis://{redis_server.address}")
    started = threading.Event()

    def slow() -> str:
        started.set()
        time.sleep(0.3)
        return "computed"

    with app.app_context():
        cache = ext.cache
        if caller == "sync":
            first = threading.Thread(target=cache.get_or_set, args=["slow", slow])
            first.start()
            started.wait(5)
            assert cache.get_or_set("slow", lambda: "not me") == "computed"
            first.join()
        else:
            async def both() -> list[Any]:
                async def slow_async() -> str:
                    started.set()
                    await asyncio.sleep(0.3)
                    return "computed"

                async def second() -> Any:
                    while not started.is_set():
                        await asyncio.sleep(0.01)
                    return await cache.aget_or_set("slow", lambda: "not me")
                return await asyncio.gather(cache.aget_or_set("slow", slow_async), second())
            assert asyncio.run(both()) == ["computed", "computed"]
    waits = otel.points("flask_core_redis.cache.single_flight.wait.duration")
    assert sum(point.count for _, point in waits) == 1
    assert sum(point.sum for _, point in waits) > 0.1  # it waited for the computation


@pytest.mark.parametrize("caller", CALLERS)
def test_answers_without_redis_are_counted_as_fail_open(otel, make_app, caller):
    app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{free_port()}",
                         "REDIS_CONNECT_TIMEOUT": 200, "REDIS_MAX_RETRIES": 0, **OTEL})
    with app.app_context():
        assert call(caller, ext.cache, "get", "k") is None
        call(caller, ext.cache, "set", "k", "v")
        assert call(caller, ext.cache, "get_or_set", "k", lambda: "fresh") == "fresh"
    assert otel.total("flask_core_redis.cache.fail_open") == 3
    assert otel.total("flask_core_redis.cache.recomputations", reason="fail_open") == 1
    assert otel.total("flask_core_redis.cache.requests") == 0


def test_near_cache_hits_evictions_and_flushes(otel, make_app, own_redis_server):
    app, ext = app_on(make_app, f"redis://{own_redis_server.address}",
                      REDIS_CACHE_LOCAL_ENTRIES=4, REDIS_CACHE_LOCAL_MAX_STALE=200)
    with app.app_context():
        cache = ext.cache
        for name in "abcdef":
            cache.set(name, name)
        wait_until(lambda: cache.get("a") == "a" and cache.near.proven(), 5, "tracking")
        wait_until(lambda: [cache.get("a") for _ in range(2)] and
                   otel.total("flask_core_redis.cache.local.hits") >= 1, 5, "a local hit")
        for name in "abcdef":  # more entries than the near cache holds
            cache.get(name)
        assert otel.total("flask_core_redis.cache.local.evictions") >= 1
        with own_redis_server.client() as admin:
            admin.flushall()
        wait_until(lambda: otel.total("flask_core_redis.cache.local.flushes") >= 1, 5,
                   "the flush to be counted")


# OTP and presence ------------------------------------------------------------------

@pytest.mark.parametrize("caller", CALLERS)
def test_otp_codes_verifications_lockouts_and_refusals(otel, make_app, server_url, caller):
    app, ext = app_on(make_app, server_url, REDIS_OTP_MAX_ATTEMPTS=2)
    with app.app_context():
        otp = ext.otp
        code = call(caller, otp, "issue", "+15550001")
        wrong = "000000" if code != "000000" else "111111"
        assert not call(caller, otp, "verify_otp", "+15550001", wrong)
        assert call(caller, otp, "verify_otp", "+15550001", code)
        with pytest.raises(OtpRateLimited):
            call(caller, otp, "issue", "+15550001")
        call(caller, otp, "store_otp", "+15550002", "123456")
        for _ in range(3):
            call(caller, otp, "check", "+15550002", "654321")
    verifications = "flask_core_redis.otp.verifications"
    assert otel.total("flask_core_redis.otp.issued") == 2
    assert otel.total(verifications, outcome="ok") == 1
    assert otel.total(verifications, outcome="invalid") == 2
    assert otel.total(verifications, outcome="locked") == 2
    assert otel.total("flask_core_redis.otp.lockouts") == 1
    assert otel.total("flask_core_redis.otp.sends_refused", reason="cooldown") == 1
    outcomes = [span.attributes["outcome"] for span in otel.spans("flask_core_redis.otp.verify")]
    assert outcomes == ["invalid", "ok", "invalid", "locked", "locked"]


@pytest.mark.parametrize("caller", CALLERS)
def test_otp_outages_are_counted(otel, make_app, caller):
    app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{free_port()}",
                         "REDIS_CONNECT_TIMEOUT": 200, "REDIS_MAX_RETRIES": 0, **OTEL})
    with app.app_context():
        with pytest.raises(OtpUnavailable):
            call(caller, ext.otp, "issue", "+15550003")
        with pytest.raises(OtpUnavailable):
            call(caller, ext.otp, "verify_otp", "+15550003", "123456")
    assert otel.total("flask_core_redis.otp.outages", operation="issue") == 1
    assert otel.total("flask_core_redis.otp.outages", operation="check") == 1
    failed = otel.spans("flask_core_redis.otp.issue")[0]
    assert failed.attributes["error.type"] == "OtpUnavailable"
    assert not failed.events  # no exception event: its message is not recorded


@pytest.mark.parametrize("caller", CALLERS)
def test_presence_opens_closes_sweeps_and_refusals(otel, make_app, server_url, caller):
    app, ext = app_on(make_app, server_url, REDIS_PRESENCE_MAX_CONNECTIONS=2)
    with app.app_context():
        presence = ext.presence
        call(caller, presence, "connect", "ann", "c1")
        call(caller, presence, "connect", "ann", "c2")
        with pytest.raises(TooManyConnections):
            call(caller, presence, "connect", "ann", "c3")
        call(caller, presence, "disconnect", "ann", "c2")
        call(caller, presence, "disconnect", "ann", "c1")
        call(caller, presence, "connect", "bob", "c1", ttl=0.05)
        time.sleep(0.1)
        assert call(caller, presence, "sweep") == ["bob"]
    assert otel.total("flask_core_redis.presence.opens", came_online=True) == 2
    assert otel.total("flask_core_redis.presence.opens", came_online=False) == 1
    assert otel.total("flask_core_redis.presence.refused") == 1
    assert otel.total("flask_core_redis.presence.closes", went_offline=False) == 1
    assert otel.total("flask_core_redis.presence.closes", went_offline=True) == 1
    assert otel.total("flask_core_redis.presence.sweeps") == 1
    assert otel.total("flask_core_redis.presence.offline", reason="closed") == 1
    assert otel.total("flask_core_redis.presence.offline", reason="swept") == 1
    sweep, = otel.spans("flask_core_redis.presence.sweep")
    assert sweep.attributes["users"] == 1
    refused = [span for span in otel.spans("flask_core_redis.presence.open")
               if span.attributes.get("refused")]
    assert len(refused) == 1


# Traces ------------------------------------------------------------------------

@pytest.fixture
def instrumented_redis() -> Any:
    """redis-py instrumented by opentelemetry-instrumentation-redis."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()


@pytest.mark.parametrize("caller", CALLERS)
def test_command_spans_nest_under_the_plugin_operation(otel, instrumented_redis, make_app,
                                                        server_url, caller):
    app, ext = app_on(make_app, server_url)
    with app.app_context():
        call(caller, ext.cache, "get_or_set", "nested", lambda: "value")
        call(caller, ext.otp, "verify_otp", "+15550004", "123456")
    for operation in ("cache.get_or_set", "otp.verify"):
        parent, = otel.spans(f"flask_core_redis.{operation}")
        children = [span for span in otel.spans()
                    if span.parent is not None and span.parent.span_id == parent.context.span_id]
        assert children, f"no command span under {operation}"
        assert all(span.context.trace_id == parent.context.trace_id for span in children)
        # The instrumentation's command spans: a sanitized statement each.
        assert all(span.attributes["db.statement"].startswith(span.name)
                   for span in children)
        assert {"EVALSHA", "MGET"} & {span.name for span in children}


def test_redis_py_metric_groups_are_chosen_by_configuration(otel, make_app, redis_server):
    app, ext = app_on(make_app, f"redis://{redis_server.address}",
                      REDIS_OTEL_REDIS_PY_METRICS="command, resiliency")
    with app.app_context():
        for _ in range(3):
            ext.client.ping()
    durations = [point.count for attributes, point
                 in otel.points("db.client.operation.duration")
                 if attributes.get("db.operation.name") == "PING"]
    if importlib.util.find_spec("redis.observability") is None:  # redis-py before 7.2
        assert durations == []
    else:
        assert sum(durations) >= 3
        assert otel.points("db.client.connection.count") == []  # CONNECTION_BASIC: off


def test_unknown_redis_py_metric_groups_are_refused(make_app):
    from flask_core_redis import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"OTEL_REDIS_PY_METRICS.*COMMAND"):
        make_app({"REDIS_URL": "memory://groups", "REDIS_OTEL": True,
                  "REDIS_OTEL_REDIS_PY_METRICS": "COMMAND,PUBSUB"})


def test_nothing_is_recorded_with_the_switch_off(otel, make_app, redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}"})
    with app.app_context():
        ext.cache.get_or_set("off", lambda: 1)
        ext.client.ping()
        assert ext.health()["ok"]
        assert not ext.cache._telemetry.on
    ours = [name for name in otel.metrics() if name.startswith("flask_core_redis.")]
    assert ours == []
    assert otel.spans() == []


def test_a_collection_does_not_wait_for_a_connect_that_holds_the_registration(
        otel, make_app, redis_server):
    app, ext = app_on(make_app, f"redis://{redis_server.address}")
    with app.app_context():
        ext.client.ping()
    state = app.extensions["core_redis"]["REDIS"]
    holding, collected = threading.Event(), threading.Event()
    seen: list[bool] = []

    def connect_under_way() -> None:  # as a client being built holds the lock
        with state._lock:
            holding.set()
            seen.append(collected.wait(10))

    holder = threading.Thread(target=connect_under_way)
    holder.start()
    holding.wait(5)
    pools = otel.total("flask_core_redis.connection.pool.connections", client="shared")
    collected.set()
    holder.join()
    assert seen == [True], "the reader waited for the registration's lock"
    assert pools >= 1
