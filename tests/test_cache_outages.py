"""The cache with Redis unreachable, hung or refusing: what fails open, what
does not, and what an outage costs."""

import contextlib
import logging
import signal
import socket
import threading

import pytest
import redis

from flask_core_redis.plugins.cache.scripts import RENEW

from .conftest import ACL_USER
from .servers import wait_until
from .test_standalone import run_with_deadline


def unavailable_warnings(caplog):
    return [record for record in caplog.records if record.levelno == logging.WARNING
            and record.getMessage().startswith("cache: Redis unavailable")]


def test_a_reply_error_is_raised_not_taken_for_an_outage(mode_app, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    app, ext = mode_app()
    with app.app_context():
        cache = ext.cache
        version = cache._keys("broken").version
        ext.client.hset(version, "not", "a version")  # every script's GET of it: WRONGTYPE
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            cache.set("k", 1, namespace="broken")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            cache.get_or_set("k", lambda: 1, namespace="broken")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            cache.invalidate_namespace("broken")
        assert cache.get_or_set("k", lambda: "fine", namespace="elsewhere") == "fine"
    assert unavailable_warnings(caplog) == []


@contextlib.contextmanager
def silent_listener():
    """A port that accepts TCP connections and never answers."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # the kernel completes the handshake; nobody ever replies
    try:
        yield f"127.0.0.1:{silent.getsockname()[1]}"
    finally:
        silent.close()


def commands_sent(client, monkeypatch):
    """Every command the cache hands to ``client`` from now on, by name."""
    sent = []
    send = client.execute_command

    def counting(*args, **options):
        sent.append(args[0])
        return send(*args, **options)

    monkeypatch.setattr(client, "execute_command", counting)
    return sent


def outage_app(make_app, address, breaker_seconds, **config):
    return make_app({"REDIS_URL": f"redis://{address}", "REDIS_CONNECT_TIMEOUT": 200,
                     "REDIS_SOCKET_TIMEOUT": 200, "REDIS_MAX_RETRIES": 0,
                     "REDIS_CACHE_BREAKER_SECONDS": breaker_seconds, **config})


def test_a_page_of_ten_cached_calls_on_a_silent_server_costs_one_failure(
        make_app, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    with silent_listener() as address:
        app, ext = outage_app(make_app, address, breaker_seconds=600)
        with app.app_context():
            sent = commands_sent(ext.client, monkeypatch)

            @ext.cache.cached(ttl=60)
            def fragment(number):
                return f"fragment {number}"

            page = [fragment(number) for number in range(10)]
            ext.cache.set("k", 1)
            assert ext.cache.get("k", "miss") == "miss"
    assert page == [f"fragment {number}" for number in range(10)]
    assert len(sent) == 1
    assert len(unavailable_warnings(caplog)) == 1


def test_after_the_breaker_interval_one_call_probes_redis_again(make_app, monkeypatch):
    with silent_listener() as address:
        app, ext = outage_app(make_app, address, breaker_seconds=0.05)
        with app.app_context():
            sent = commands_sent(ext.client, monkeypatch)
            assert ext.cache.get("k", "miss") == "miss"
            assert len(sent) == 1
            for probes in (2, 3):
                wait_until(lambda probes=probes: ext.cache.get("k", "miss") == "miss"
                           and len(sent) == probes, 10, f"probe {probes}")


@pytest.mark.integration
def test_a_server_stopped_by_sigstop_costs_one_timeout_for_ten_reads(
        make_app, own_redis_server, monkeypatch):
    app, ext = outage_app(make_app, own_redis_server.address, breaker_seconds=600)
    with app.app_context():
        ext.cache.set_many({f"k{number}": number for number in range(10)})
        sent = commands_sent(ext.client, monkeypatch)
        own_redis_server.signal(signal.SIGSTOP)
        try:
            during = [ext.cache.get(f"k{number}", "miss") for number in range(10)]
            many = ext.cache.get_many(["k1", "k2"])
            computed = ext.cache.get_or_set("k5", lambda: "computed")
        finally:
            own_redis_server.signal(signal.SIGCONT)
    assert during == ["miss"] * 10 and many == {} and computed == "computed"
    assert len(sent) == 1


@pytest.mark.integration
def test_the_cache_uses_redis_again_once_a_stopped_server_answers(
        make_app, own_redis_server, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    app, ext = outage_app(make_app, own_redis_server.address, breaker_seconds=0.05)
    with app.app_context():
        ext.cache.set("k", "cached")
        own_redis_server.signal(signal.SIGSTOP)
        try:
            assert ext.cache.get("k", "miss") == "miss"
        finally:
            own_redis_server.signal(signal.SIGCONT)
        wait_until(lambda: ext.cache.get("k") == "cached", 10, "the cache to read Redis again")
    assert [record.getMessage() for record in caplog.records
            if record.getMessage().startswith("cache:")][-1] == "cache: Redis is back"


@pytest.mark.parametrize("fail_open", ["true", "false"])
def test_a_deletion_or_invalidation_that_meets_an_outage_raises(make_app, fail_open):
    """Lost without a word, it would leave the old value to be served, for its
    whole TTL, once Redis is back: the caller must know it did not happen."""
    with silent_listener() as address:
        app, ext = outage_app(make_app, address, breaker_seconds=600,
                              REDIS_CACHE_FAIL_OPEN=fail_open)
        with app.app_context():
            with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
                ext.cache.invalidate_namespace("profiles")
            with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
                ext.cache.delete("k", namespace="profiles")  # the breaker is open now


@pytest.mark.integration
def test_deletions_and_invalidations_are_tried_even_while_the_breaker_is_open(
        make_app, own_redis_server):
    """Skipped, they would leave stale entries behind once Redis is back."""
    app, ext = outage_app(make_app, own_redis_server.address, breaker_seconds=600)
    with app.app_context():
        ext.cache.set("k", "stale", namespace="profiles")
        ext.cache.set("gone", "stale")
        own_redis_server.signal(signal.SIGSTOP)
        try:
            assert ext.cache.get("k", "miss", namespace="profiles") == "miss"  # opens it
        finally:
            own_redis_server.signal(signal.SIGCONT)
        assert ext.cache.invalidate_namespace("profiles") == 1
        assert ext.cache.delete("gone") is True
        assert ext.cache.get("k", "miss", namespace="profiles") == "miss"
        assert ext.cache.get_or_set("k", lambda: "fresh", namespace="profiles") == "fresh"
        assert ext.cache.get("k", namespace="profiles") == "fresh"


def no_socket_timeout_app(make_app, address, **config):
    """REDIS_SOCKET_TIMEOUT unset, as by default: the shared client waits for a
    reply for ever."""
    return make_app({"REDIS_URL": f"redis://{address}", "REDIS_CONNECT_TIMEOUT": 200,
                     "REDIS_CACHE_BREAKER_SECONDS": 600, **config})


@pytest.mark.integration
def test_with_no_socket_timeout_a_stopped_server_still_fails_open(make_app, own_redis_server):
    """Each cache command waits at most CONNECT_TIMEOUT for its reply, also on
    a warm pooled connection, so a hung server cannot hang the request."""
    app, ext = no_socket_timeout_app(make_app, own_redis_server.address)

    @ext.cache.cached(ttl=60)
    def fragment():
        return "computed"

    with app.app_context():
        ext.cache.set("k", "cached")
        assert ext.cache.get("k") == "cached"  # the cache's pool holds a connection now

    def during_the_outage():
        with app.app_context():
            return fragment(), ext.cache.get("k", "miss")

    own_redis_server.signal(signal.SIGSTOP)
    try:
        outcome = run_with_deadline(during_the_outage)
    finally:
        own_redis_server.signal(signal.SIGCONT)
    assert outcome == {"value": ("computed", "miss")}


@pytest.mark.integration
def test_a_server_that_stops_during_a_computation_leaves_no_thread_waiting_on_it(
        make_app, own_redis_server, monkeypatch):
    """The value is returned, and the thread renewing the lock gives up its
    try on the hung server and ends (with no socket timeout it waited for ever)."""
    app, ext = no_socket_timeout_app(make_app, own_redis_server.address,
                                     REDIS_CACHE_LOCK_TIMEOUT=1)
    renewing: list[threading.Thread] = []
    renew = RENEW.operation

    def watching_renewals(*args, **options):
        renewing.append(threading.current_thread())
        return renew(*args, **options)

    monkeypatch.setattr(RENEW, "operation", watching_renewals)

    def compute():
        own_redis_server.signal(signal.SIGSTOP)
        wait_until(lambda: renewing, 30, "the lock keeper to renew the lock")
        return "computed"

    def get_or_set():
        with app.app_context():
            return ext.cache.get_or_set("k", compute)

    with app.app_context():
        ext.client.ping()  # a warm connection in the shared pool too: none may be used
    try:
        outcome = run_with_deadline(get_or_set)
        wait_until(lambda: not renewing[0].is_alive(), 60, "the lock keeper to end")
    finally:
        own_redis_server.signal(signal.SIGCONT)
    assert outcome == {"value": "computed"}


@pytest.mark.integration
def test_a_full_pool_and_refused_credentials_fail_open_and_say_why(make_app, redis_server,
                                                                   auth_server, caplog):
    """redis-py raises both as connection errors: the cache serves the request
    without Redis, as in an outage, and its warning names the cause."""
    caplog.set_level(logging.INFO, "flask_core_redis")
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}",
                         "REDIS_MAX_CONNECTIONS": 1, "REDIS_SOCKET_TIMEOUT": 1000})
    with app.app_context():
        pool = ext.client.connection_pool
        held = pool.get_connection()
        try:
            assert ext.cache.get("k", "miss") == "miss"
        finally:
            pool.release(held)
    app, ext = make_app({"REDIS_URL": f"redis://{ACL_USER}:wrong-hunter2@{auth_server.address}"})
    with app.app_context():
        ext.cache.set("k", 1)
        assert ext.cache.get("k", "miss") == "miss"
    causes = [record.getMessage() for record in unavailable_warnings(caplog)]
    assert len(causes) == 2, causes
    assert "MaxConnectionsError" in causes[0] and "AuthenticationError" in causes[1], causes
    assert not [text for text in causes if "hunter2" in text]
