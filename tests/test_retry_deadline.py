"""REDIS_RETRY_DEADLINE: retries bounded by time instead of count, so that a
failover rides through without an error reaching the caller."""

import logging
import threading
import time

import pytest
import redis

from .servers import free_port, write_until

pytestmark = pytest.mark.integration


def retries_logged(events_log):
    return [record.getMessage() for record in events_log.records
            if record.levelno == logging.INFO and ": retry " in record.getMessage()]


def test_a_deadline_retries_with_the_delays_until_it_would_pass(make_app, events_log):
    port = free_port()  # nothing listens: every try fails at once
    app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{port}", "REDIS_MAX_RETRIES": 0,
                         "REDIS_RETRY_DEADLINE": 400})
    with app.app_context(), pytest.raises(redis.ConnectionError):
        ext.client.ping()
    # 50 + 100 + 150 ms of waits; the next, 200 ms, would start after 400 ms.
    assert retries_logged(events_log) == [f"[REDIS] 127.0.0.1:{port}: retry {n} in {n * 50} ms"
                                          for n in (1, 2, 3)]


def test_without_a_deadline_the_count_applies(make_app, events_log):
    port = free_port()
    app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{port}", "REDIS_MAX_RETRIES": 1})
    with app.app_context(), pytest.raises(redis.ConnectionError):
        ext.client.ping()
    assert len(retries_logged(events_log)) == 1


def test_the_health_check_makes_no_retry_under_a_deadline(make_app, events_log):
    """The health check reports the error of its one try, at once: under a
    deadline it had retried for the whole deadline and said "no answer"."""
    port = free_port()
    app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{port}",
                         "REDIS_RETRY_DEADLINE": 10_000})
    with app.app_context():
        report = ext.health()
    assert report["ok"] is False and "ConnectionError" in report["error"], report
    assert retries_logged(events_log) == []


def test_a_wrong_password_is_still_refused_at_once(make_app, auth_server, events_log):
    app, ext = make_app({"REDIS_URL": f"redis://app:wrong@{auth_server.address}",
                         "REDIS_RETRY_DEADLINE": 5000})
    started = time.monotonic()
    with app.app_context(), pytest.raises(redis.AuthenticationError):
        ext.client.ping()
    assert retries_logged(events_log) == [] and time.monotonic() - started < 5


def test_a_full_pool_is_still_raised_at_once(make_app, redis_server, events_log, key):
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}",
                         "REDIS_RETRY_DEADLINE": 5000, "REDIS_MAX_CONNECTIONS": 1})
    with app.app_context():
        pool = ext.client.connection_pool
        held = pool.get_connection()
        started = time.monotonic()
        try:
            with pytest.raises(redis.exceptions.MaxConnectionsError):
                ext.client.get(key)
        finally:
            pool.release(held)
    assert retries_logged(events_log) == [] and time.monotonic() - started < 5


def write_through(client, key, stop, errors, written):
    """INCR ``key`` until ``stop``; every error and every acknowledged write counted."""
    while not stop.is_set():
        try:
            client.incr(key)
            written.append(1)
        except redis.RedisError as error:
            errors.append(error)
        time.sleep(0.01)


def ride_through(client, key, fault):
    """Errors that reached a writer of ``key`` while ``fault()`` ran, and
    writes it saw acknowledged, once writes land again."""
    errors, written, stop = [], [], threading.Event()
    writer = threading.Thread(target=write_through, args=(client, key, stop, errors, written),
                              daemon=True)
    writer.start()
    try:
        write_until(client, key, 5, [])
        fault()
        acknowledged = len(written)
        deadline = time.monotonic() + 30
        while len(written) <= acknowledged + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        writer.join(30)
    return errors, written


def test_a_sentinel_failover_surfaces_no_error_within_the_deadline(make_app, own_sentinel, key):
    app, ext = make_app({"REDIS_URL": own_sentinel.url, "REDIS_CONNECT_TIMEOUT": 500,
                         "REDIS_RETRY_DEADLINE": 20_000})
    with app.app_context():
        def kill_the_master():
            own_sentinel.process_on(own_sentinel.master_port()).kill()

        errors, written = ride_through(ext.client, key, kill_the_master)
    assert errors == [] and len(written) > 20
    assert own_sentinel.master_port() == own_sentinel.replica.port


def test_a_cluster_master_kill_surfaces_no_error_within_the_deadline(make_app, own_cluster,
                                                                     key):
    app, ext = make_app({"REDIS_URL": own_cluster.url, "REDIS_CONNECT_TIMEOUT": 500,
                         "REDIS_RETRY_DEADLINE": 20_000})
    with app.app_context():
        errors, written = ride_through(ext.client, key,
                                       lambda: own_cluster.master_of(key).kill())
    assert errors == [] and len(written) > 20
