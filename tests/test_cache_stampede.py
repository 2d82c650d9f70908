"""get_or_set under races: invalidation during a computation, a computation
that fails or outlives its lock, many callers at once."""

import contextlib
import threading
import time

import pytest

from .servers import run_concurrently


@pytest.fixture
def cache(mode_app):
    app, ext = mode_app()
    with app.app_context():
        yield ext.cache


def test_a_value_computed_before_an_invalidation_is_not_stored_after_it(cache):
    def compute_then_see_the_data_change():
        value = "computed from the old data"
        cache.invalidate_namespace("profiles")  # the data changed meanwhile
        return value

    assert cache.get_or_set("p", compute_then_see_the_data_change,
                            namespace="profiles") == "computed from the old data"
    assert cache.get("p", "miss", namespace="profiles") == "miss"
    assert cache.get_or_set("p", lambda: "new", namespace="profiles") == "new"
    assert cache.get("p", namespace="profiles") == "new"


class Computations:
    """How many computations started, and the most that ever ran at once."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started = self.running = self.most = 0

    @contextlib.contextmanager
    def one(self):
        with self._lock:
            self.started += 1
            self.running += 1
            self.most = max(self.most, self.running)
            number = self.started
        try:
            yield number
        finally:
            with self._lock:
                self.running -= 1


def outcome(call):
    try:
        return "value", call()
    except Exception as error:
        return "error", error


def test_when_the_computation_raises_the_waiters_compete_again_one_at_a_time(cache):
    computations = Computations()

    def compute():
        with computations.one() as number:
            time.sleep(0.3 if number == 1 else 0.05)  # a computation: the others wait
            if number == 1:
                raise LookupError("the first computation fails")
            return "fresh"

    outcomes = run_concurrently(
        *[lambda: outcome(lambda: cache.get_or_set("k", compute, ttl=60))] * 20)
    assert computations.most == 1
    errors = [value for kind, value in outcomes if kind == "error"]
    assert [str(error) for error in errors] == ["the first computation fails"]
    assert [value for kind, value in outcomes if kind == "value"] == ["fresh"] * 19
    assert computations.started == 2


def test_a_computation_that_outlives_the_lock_timeout_keeps_its_lock(mode_app):
    app, ext = mode_app({"REDIS_CACHE_LOCK_TIMEOUT": 1})
    computations = Computations()

    def slow():
        with computations.one():
            time.sleep(2.5)  # two and a half lock timeouts
            return "slow"

    with app.app_context():
        cache = ext.cache
    results = run_concurrently(*[lambda: cache.get_or_set("k", slow, ttl=60)] * 10)
    assert results == ["slow"] * 10
    assert computations.started == computations.most == 1


def test_the_lock_of_a_caller_that_died_expires_and_a_waiter_takes_over(cache):
    lock = cache._keys("default").names("k").lock
    cache.context.client.set(lock, "a process that was killed", px=300)
    computations = Computations()

    def compute():
        with computations.one():
            return "computed"

    assert cache.get_or_set("k", compute, ttl=60) == "computed"
    assert computations.started == 1
    assert cache.get("k") == "computed"
