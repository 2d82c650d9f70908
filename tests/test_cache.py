"""The cache plugin, on memory, standalone, Sentinel and Cluster."""

import json
import logging
import threading
import time
import uuid

import pytest
import redis
from flask import Flask

from flask_core_redis.plugin_api import MAX_TTL_SECONDS
from flask_core_redis.plugins.cache.entries import Entry, encode
from flask_core_redis.plugins.cache.scripts import CLAIM

from .servers import run_concurrently, wait_until
from .tcp_proxy import FaultProxy


@pytest.fixture
def cache_app(mode_app):
    return mode_app()


@pytest.fixture
def cache(cache_app):
    app, ext = cache_app
    with app.app_context():
        yield ext.cache


def test_get_set_delete(cache):
    assert cache.get("k") is None
    assert cache.get("k", "fallback") == "fallback"
    cache.set("k", {"name": "Ann", "tags": [1, 2]})
    assert cache.get("k") == {"name": "Ann", "tags": [1, 2]}
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get("k") is None


def test_many_in_one_call(cache):
    cache.set_many({f"k{n}": n for n in range(20)}, ttl=60)
    assert cache.get_many(["k1", "k7", "missing"]) == {"k1": 1, "k7": 7}
    assert cache.get_many([]) == {}


def test_every_write_has_a_ttl(cache_app):
    app, ext = cache_app
    with app.app_context():
        ext.cache.set("default-ttl", 1)
        ext.cache.set("short", 1, ttl=30)
        keys = {key.rsplit(":", 1)[1]: key for key in ext.client.scan_iter(
            match=f"{ext.settings.key_prefix}{{cache:default}}:*")}
        assert 3_590_000 < ext.client.pttl(keys["default-ttl"]) <= 3_600_000
        assert 0 < ext.client.pttl(keys["short"]) <= 30_000
        raw = ext.client.get(keys["short"])
    assert raw.endswith(":1")  # JSON, not pickle


@pytest.mark.parametrize("ttl", [0, -5, "60", True, 0.0004, float("inf"), float("nan"),
                                 MAX_TTL_SECONDS + 1, 10**400])
def test_bad_ttl_is_refused_at_the_call(cache, ttl):
    """Never sent to Redis, where it would be a reply error."""
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        cache.set("k", 1, ttl=ttl)
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        cache.get_or_set("k", lambda: 1, ttl=ttl)


def test_values_must_be_json(cache):
    with pytest.raises(TypeError, match="JSON-serializable"):
        cache.set("k", object())
    assert cache.get("k") is None


def test_get_or_set_and_cached_decorator(cache):
    calls = []

    def load():
        calls.append(1)
        return {"n": len(calls)}

    assert cache.get_or_set("profile", load, ttl=60) == {"n": 1}
    assert cache.get_or_set("profile", load, ttl=60) == {"n": 1}
    assert len(calls) == 1

    @cache.cached(ttl=60, key="user:{user_id}", namespace="users")
    def user(user_id, detail=False):
        calls.append(user_id)
        return {"id": user_id, "detail": detail}

    assert user(7) == user(7) == {"id": 7, "detail": False}
    assert calls.count(7) == 1
    assert cache.get("user:7", namespace="users") == {"id": 7, "detail": False}

    @cache.cached(ttl=60)
    def by_arguments(a, b=2):
        calls.append((a, b))
        return a + b

    assert by_arguments(1) == by_arguments(1, b=2) == 3
    assert by_arguments(2) == 4
    assert calls.count((1, 2)) == 1


def test_cached_at_import_time_uses_the_cache_of_the_app_it_runs_in(make_app, memory_url):
    first, ext = make_app({"REDIS_URL": memory_url})
    second = Flask("second")
    second.config.update(SECRET_KEY="s", REDIS_URL=memory_url + "-second")
    ext.init_app(second)
    calls = []

    @ext.cache.cached(ttl=60, key="answer")  # no app context here
    def answer():
        calls.append(1)
        return 42

    for app in (first, second, first):
        with app.app_context():
            assert answer() == 42
    assert len(calls) == 2  # once per app: each has its own Redis
    with second.app_context():
        assert ext.cache.get("answer") == 42
        ext.close()


def test_fifty_callers_on_a_cold_key_compute_once(cache):
    runs = []

    def slow():
        runs.append(1)
        time.sleep(0.2)
        return "fresh"

    results = run_concurrently(*[lambda: cache.get_or_set("cold", slow, ttl=60)] * 50)
    assert len(runs) == 1
    assert results == ["fresh"] * 50


def test_early_refresh_is_likely_only_near_expiry():
    now = time.time() * 1000
    far = Entry("v", compute_ms=5, expires_ms=now + 3_600_000)
    near = Entry("v", compute_ms=1000, expires_ms=now + 100)
    assert not any(far.due(now) for _ in range(10_000))
    assert sum(near.due(now) for _ in range(1000)) > 800  # P = e^-0.1, about 0.9


def test_near_expiry_one_caller_refreshes_and_the_others_keep_the_old_value(cache):
    cache.set("hot", "old", ttl=60)
    # An entry that took days to compute is due for refresh (P > 0.9999 per call).
    keys = cache._keys("default")
    client = cache.context.client
    version = client.get(keys.version) or "0"
    body = encode(cache.serializer(), "old", 60_000, compute_ms=10**9).decode()
    client.set(keys.entry("hot"), f"{version}:{body}", px=60_000)
    refreshes = []

    def slow():
        refreshes.append(1)
        time.sleep(0.2)
        return "new"

    results = run_concurrently(*[lambda: cache.get_or_set("hot", slow, ttl=60)] * 10)
    assert len(refreshes) == 1
    assert sorted(results) == ["new"] + ["old"] * 9
    assert cache.get("hot") == "new"


def test_invalidate_namespace_is_o1_and_leaves_others(cache_app):
    app, ext = cache_app
    with app.app_context():
        ext.cache.set_many({f"p{n}": n for n in range(10)}, namespace="profiles")
        ext.cache.set("keep", 1, namespace="other")
        ext.cache.invalidate_namespace("profiles")
        assert ext.cache.get_many([f"p{n}" for n in range(10)], namespace="profiles") == {}
        assert ext.cache.get("keep", namespace="other") == 1
        ext.cache.set("p1", "again", namespace="profiles")
        assert ext.cache.get("p1", namespace="profiles") == "again"
    result = app.test_cli_runner().invoke(args=["redis", "cache", "clear", "profiles"])
    assert result.exit_code == 0 and "invalidated" in result.output
    with app.app_context():
        assert ext.cache.get("p1", namespace="profiles") is None


def test_an_invalidation_elsewhere_is_seen_by_the_very_next_read(mode_app):
    """No process keeps a namespace's version: every read fetches it from Redis
    with the entry, so another process's invalidation holds at once."""
    prefix = f"shared-{uuid.uuid4().hex[:8]}:"
    reader_app, reader = mode_app({"REDIS_KEY_PREFIX": prefix})
    other_app, other = mode_app({"REDIS_KEY_PREFIX": prefix})
    with reader_app.app_context():
        reader.cache.set_many({"k": "old", "j": 1})
        assert reader.cache.get("k") == "old"
    with other_app.app_context():
        other.cache.invalidate_namespace("default")
    with reader_app.app_context():
        assert reader.cache.get("k") is None
        assert reader.cache.get_many(["k", "j"]) == {}
        assert reader.cache.get_or_set("k", lambda: "new") == "new"
    with other_app.app_context():
        assert other.cache.get("k") == "new"


def test_a_key_that_is_not_a_str_names_the_entry_of_its_text(cache):
    cache.set(7, "seven")
    assert cache.get(7) == cache.get("7") == "seven"
    assert cache.get_many([7]) == {7: "seven"}
    assert cache.delete(7)


def test_key_prefix_separates_apps_sharing_one_redis(mode_app):
    app_a, ext_a = mode_app({"REDIS_KEY_PREFIX": "app-a:"})
    app_b, ext_b = mode_app({"REDIS_KEY_PREFIX": "app-b:"})
    with app_a.app_context():
        ext_a.cache.set("same-key", "a")
    with app_b.app_context():
        assert ext_b.cache.get("same-key") is None
        ext_b.cache.set("same-key", "b")
    with app_a.app_context():
        assert ext_a.cache.get("same-key") == "a"


def test_fail_open_when_redis_is_down(make_app, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0})
    runs = []
    with app.app_context():
        @ext.cache.cached(ttl=60)
        def page():
            runs.append(1)
            return "rendered"

        assert ext.cache.get("k", "default") == "default"
        ext.cache.set("k", 1)
        assert ext.cache.get_or_set("k", lambda: "computed") == "computed"
        assert page() == page() == "rendered"
    assert len(runs) == 2
    warnings = [r for r in caplog.records
                if r.levelno == logging.WARNING and r.getMessage().startswith("cache:")]
    assert len(warnings) == 1


def test_bytes_clients_read_their_entries_too(mode_app):
    app, ext = mode_app({"REDIS_DECODE_RESPONSES": "false"})
    with app.app_context():
        ext.cache.set("k", {"x": 1})
        ext.cache.invalidate_namespace("default")
        ext.cache.set("k2", [1])
        assert ext.cache.get_many(["k", "k2"]) == {"k2": [1]}


def test_fail_closed_when_configured(make_app):
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0,
                         "REDIS_CACHE_FAIL_OPEN": "false"})
    with app.app_context(), pytest.raises(redis.ConnectionError):
        ext.cache.get("k")


def test_raw_values_are_json_with_xfetch_header(cache_app):
    app, ext = cache_app
    with app.app_context():
        ext.cache.set("doc", {"a": [1, "x"]}, ttl=60)
        pattern = f"{ext.settings.key_prefix}{{cache:default}}:*doc"
        (key,) = list(ext.client.scan_iter(match=pattern))
        version, compute_ms, expires_ms, payload = ext.client.get(key).split(":", 3)
    assert json.loads(payload) == {"a": [1, "x"]}
    assert float(expires_ms) > time.time() * 1000
    assert compute_ms == "0"  # set() computed nothing
    assert version == "0"  # the namespace was never invalidated


@pytest.mark.integration
def test_a_claim_whose_reply_is_lost_does_not_wait_on_its_own_lock(make_app, own_redis_server):
    """The reply to the lock claim is lost after the script took the lock, and
    the retry policy sends it again: the caller computes at once instead of
    waiting out its own lock (an hour here)."""
    with FaultProxy(own_redis_server.port) as proxy:
        app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{proxy.port}",
                             "REDIS_SOCKET_TIMEOUT": 200, "REDIS_MAX_RETRIES": 1,
                             "REDIS_CACHE_LOCK_TIMEOUT": 3600})
        with app.app_context():
            assert ext.cache.get_or_set("warm-up", lambda: 0) == 0  # the script is loaded
            proxy.lose_reply_to(CLAIM.sha)
            computed, outcome = [], []

            def call():
                with app.app_context():
                    outcome.append(ext.cache.get_or_set(
                        "report", lambda: computed.append(1) or {"rows": 3}))

            caller = threading.Thread(target=call, daemon=True)
            caller.start()
            wait_until(lambda: not caller.is_alive(), 10, "get_or_set to return")
            assert proxy.replies_lost == 1
            assert outcome == [{"rows": 3}] and computed == [1]
            assert ext.cache.get("report") == {"rows": 3}
