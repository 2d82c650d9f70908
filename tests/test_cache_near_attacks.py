"""Attacks on the cache's near cache (``CACHE_LOCAL_ENTRIES``), each checked
against what it promises (docs/plugins/near-cache.md, "What it guarantees"):
hostile and Unicode keys and namespaces, many threads of two apps reading and
writing at once, ``get_or_set`` across apps, changes made by other Redis
clients, TTLs, every transport, ``close()`` under load, a fork under load,
and what its invalidation connection logs when it is refused.

Two apps on one server stand for two processes, as in tests/test_cache_near.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_core_redis import CoreRedis

from .conftest import ACL_PASSWORD, ACL_USER, REQUIRE_PASSWORD, AppFactory
from .servers import RedisProcess, free_port, run_forked, wait_until

pytestmark = pytest.mark.integration

App = tuple[Flask, CoreRedis]

#: The bound most tests run with, in ms: short, so that waiting it out is cheap.
MAX_STALE = 200


def near_config(max_stale: int = MAX_STALE, **more: Any) -> dict[str, Any]:
    return {"REDIS_CACHE_LOCAL_ENTRIES": 1000, "REDIS_CACHE_LOCAL_MAX_STALE": max_stale,
            **more}


def fresh_prefix() -> str:
    return f"atk{uuid.uuid4().hex[:8]}:"


def server_url(request: pytest.FixtureRequest, where: str) -> str:
    if where == "standalone":
        return f"redis://{request.getfixturevalue('redis_server').address}/0"
    return str(request.getfixturevalue(where).url)


def two_apps(make_app: AppFactory, url: str, **config: Any) -> tuple[App, App]:
    shared = {"REDIS_URL": url, "REDIS_KEY_PREFIX": fresh_prefix(), **near_config(), **config}
    return make_app(shared), make_app(shared)


@contextlib.contextmanager
def cache_of(app: App) -> Iterator[Any]:
    """The app's cache, in the app's context."""
    flask_app, ext = app
    with flask_app.app_context():
        yield ext.cache


def call(app: App, use: Callable[[Any], Any]) -> Any:
    """``use(cache)`` in the app's context."""
    with cache_of(app) as cache:
        return use(cache)


def hits(app: App) -> int:
    return int(call(app, lambda cache: cache.near.hits))


def served_locally(app: App, key: str, expected: Any, namespace: str = "default",
                   timeout: float = 10) -> None:
    """Read ``key`` until a read is served from process memory with ``expected``."""
    def local_hit() -> bool:
        before = hits(app)
        got = call(app, lambda cache: cache.get(key, namespace=namespace))
        return bool(got == expected and hits(app) > before)

    wait_until(local_hit, timeout, f"a local hit of {key!r} in {namespace!r}")


def past_the_bound(max_stale: int = MAX_STALE) -> None:
    """Sleep out ``max_stale``, with a little room for the reader's own clock."""
    time.sleep(max_stale / 1000 + 0.05)


def entry_name(app: App, key: str, namespace: str = "default") -> str:
    return str(call(app, lambda cache: cache._keys(namespace).entry(key)))


# Hostile keys and namespaces ---------------------------------------------

HOSTILE_KEYS = ["", "😀", "a}b{c", "{x}", "#version", "x}:k", "#lock:k", "tab\tnew\nline",
                "nul\x00byte", "ünïcødé:ключ:鍵", "k" * 10_000, "😀" * 2_000]
HOSTILE_NAMESPACES = ["a", "a}x", "a}:x", "n}:{x", "é😀", "#", "{", "}", "default:x"]


@pytest.mark.parametrize("where", ["standalone", "cluster"])
def test_hostile_keys_and_namespaces_are_invalidated_by_another_process(
        request: pytest.FixtureRequest, make_app: AppFactory, where: str) -> None:
    """Every key of every namespace is held locally, then changed by the other
    app: once the bound has passed, no old copy is served anywhere."""
    a, b = two_apps(make_app, server_url(request, where))
    pairs = [(namespace, key) for namespace in HOSTILE_NAMESPACES for key in HOSTILE_KEYS]
    with cache_of(a) as cache:
        for namespace in HOSTILE_NAMESPACES:
            cache.set_many({key: ["old", key] for key in HOSTILE_KEYS}, namespace=namespace)
    served_locally(a, "a}b{c", ["old", "a}b{c"], namespace="a}x")
    with cache_of(a) as cache:
        for namespace in HOSTILE_NAMESPACES:  # every pair held
            cache.get_many(HOSTILE_KEYS, namespace=namespace)
        before = cache.near.hits
        for namespace, key in pairs:
            assert cache.get(key, namespace=namespace) == ["old", key]
        assert cache.near.hits - before == len(pairs), "not every pair was held locally"

    with cache_of(b) as cache:
        for namespace, key in pairs:
            cache.set(key, ["new", key], namespace=namespace)
    past_the_bound()
    with cache_of(a) as cache:
        for namespace, key in pairs:
            got = cache.get(key, namespace=namespace)
            assert got == ["new", key], (namespace, key[:20], got)

    served_locally(a, "😀", ["new", "😀"], namespace="é😀")
    with cache_of(b) as cache:
        for namespace in HOSTILE_NAMESPACES:
            cache.invalidate_namespace(namespace)
    past_the_bound()
    with cache_of(a) as cache:
        for namespace in HOSTILE_NAMESPACES:
            found = cache.get_many(HOSTILE_KEYS, namespace=namespace)
            assert found == {}, (namespace, sorted(found)[:3])


def test_only_the_selected_namespaces_are_ever_served_locally(
        make_app: AppFactory, redis_server: RedisProcess) -> None:
    """Selection is by exact name: neither a namespace whose tag starts with
    a selected one's ("a}x" beside "a") nor one equal but for case or
    spaces is held, by any of the reads."""
    selected = ["a", "b}x"]
    others = ["a}x", "A", " a", "a ", "b", "b}", "b}x}", "default"]
    for value in ("a, b}x ,", selected):
        app = make_app({"REDIS_URL": f"redis://{redis_server.address}/0",
                        "REDIS_KEY_PREFIX": fresh_prefix(),
                        **near_config(REDIS_CACHE_LOCAL_NAMESPACES=value)})
        with cache_of(app) as cache:
            for namespace in selected + others:
                cache.set("k", namespace, namespace=namespace)
        for namespace in selected:
            served_locally(app, "k", namespace, namespace=namespace)
        with cache_of(app) as cache:
            for _ in range(3):
                for namespace in others:
                    before = cache.near.hits
                    assert cache.get("k", namespace=namespace) == namespace
                    assert cache.get_many(["k"], namespace=namespace) == {"k": namespace}
                    assert cache.get_or_set("k", lambda: "computed",
                                            namespace=namespace) == namespace
                    assert asyncio.run(cache.aget("k", namespace=namespace)) == namespace
                    assert cache.near.hits == before, f"{namespace!r} was served locally"
            held = list(cache.near.entries._items)
            tags = [cache._keys(namespace).entry_prefix[:-1] for namespace in others]
        assert not [name for name in held
                    if any(name.startswith((tag + ":", tag + "#")) for tag in tags)]


# Many threads, two apps ------------------------------------------------------

KEYS = ["a", "b", "c", "ü😀{x}", ""]
NAMESPACES = ["n", "n}x"]


def _mixed_writes(app: App, seed: int, stop: threading.Event, errors: list[BaseException],
                  ) -> None:
    chooser = random.Random(seed)
    with cache_of(app) as cache:
        while not stop.is_set():
            key, namespace = chooser.choice(KEYS), chooser.choice(NAMESPACES)
            roll = chooser.random()
            try:
                if roll < 0.45:
                    cache.set(key, chooser.randint(0, 999), namespace=namespace)
                elif roll < 0.6:
                    cache.delete(key, namespace=namespace)
                elif roll < 0.7:
                    cache.set_many({k: chooser.randint(0, 9) for k in chooser.sample(KEYS, 2)},
                                   namespace=namespace)
                elif roll < 0.75:
                    cache.invalidate_namespace(namespace)
                elif roll < 0.85:
                    asyncio.run(cache.aset(key, [roll], namespace=namespace))
                else:
                    cache.get_or_set(key, lambda: {"computed": seed}, namespace=namespace)
            except BaseException as error:  # handed back to the test
                errors.append(error)


def _mixed_reads(app: App, seed: int, stop: threading.Event, errors: list[BaseException],
                 ) -> None:
    chooser = random.Random(seed)
    with cache_of(app) as cache:
        while not stop.is_set():
            namespace = chooser.choice(NAMESPACES)
            try:
                if chooser.random() < 0.5:
                    cache.get(chooser.choice(KEYS), namespace=namespace)
                else:
                    cache.get_many(chooser.sample(KEYS, 3), namespace=namespace)
            except BaseException as error:  # handed back to the test
                errors.append(error)


@pytest.mark.parametrize("where", ["standalone", "cluster"])
def test_once_writers_stop_and_the_bound_passes_both_apps_read_what_the_server_holds(
        request: pytest.FixtureRequest, make_app: AppFactory, where: str) -> None:
    """Six writer threads (set, delete, set_many, invalidate, aset,
    get_or_set) and ten reader threads (get, get_many) over two apps and the
    same keys, for two seconds; then, after the bound, every read of either
    app, sync or async, gives what a plain read of the server gives."""
    url = server_url(request, where)
    a, b = two_apps(make_app, url)
    prefix = call(a, lambda cache: cache.context.key_prefix)
    plain = make_app({"REDIS_URL": url, "REDIS_KEY_PREFIX": prefix})
    apps = [a, b]
    stop = threading.Event()
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_mixed_writes, args=(apps[i % 2], i, stop, errors))
               for i in range(6)]
    threads += [threading.Thread(target=_mixed_reads, args=(apps[i % 2], 100 + i, stop, errors))
                for i in range(10)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[:3]
    past_the_bound()
    def reads(cache: Any) -> dict[tuple[str, str], Any]:
        return {(ns, key): cache.get(key, namespace=ns) for ns in NAMESPACES for key in KEYS}

    truth = call(plain, reads)

    async def async_reads(cache: Any) -> dict[tuple[str, str], Any]:
        return {(ns, key): await cache.aget(key, namespace=ns)
                for ns in NAMESPACES for key in KEYS}

    for app in apps:
        for _ in range(3):
            assert call(app, reads) == truth
            assert call(app, lambda cache: asyncio.run(async_reads(cache))) == truth
    assert hits(a) + hits(b) > 0, "nothing was served locally: the test checked nothing"


def test_get_or_set_computes_once_across_two_apps_and_once_again_after_an_invalidation(
        make_app: AppFactory, redis_server: RedisProcess) -> None:
    a, b = two_apps(make_app, f"redis://{redis_server.address}/0")
    apps = [a, b]
    computed: list[int] = []
    lock = threading.Lock()

    def compute() -> dict[str, int]:
        with lock:
            computed.append(1)
            count = len(computed)
        time.sleep(0.3)
        return {"n": count}

    def callers() -> list[Any]:
        results: list[Any] = []

        def caller(index: int) -> None:
            results.append(call(apps[index % 2], lambda cache: cache.get_or_set(
                "k", compute, ttl=60) if index % 3 else asyncio.run(
                cache.aget_or_set("k", compute, ttl=60))))

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        return results

    assert callers() == [{"n": 1}] * 12
    assert len(computed) == 1
    for app in apps:
        served_locally(app, "k", {"n": 1})
    call(a, lambda cache: cache.invalidate_namespace("default"))
    past_the_bound()
    assert callers() == [{"n": 2}] * 12
    assert len(computed) == 2


def test_get_many_mixes_local_hits_and_misses_and_sees_own_changes_at_once(
        make_app: AppFactory, redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch,
        ) -> None:
    """With the other process's invalidations not arriving at all, this
    process's own set_many, delete, aset, get_or_set and invalidate_namespace
    are still seen by its next get_many, whose keys are partly held locally."""
    a, _ = two_apps(make_app, f"redis://{redis_server.address}/0")
    call(a, lambda cache: cache.set_many({"x": 1, "y": [2], "z": "3"}))
    served_locally(a, "x", 1)
    assert call(a, lambda cache: cache.get_many(["x", "y", "z"])) == {"x": 1, "y": [2], "z": "3"}
    near = call(a, lambda cache: cache.near)
    monkeypatch.setattr(near, "invalidated", lambda keys: None)

    def many() -> dict[str, Any]:
        return dict(call(a, lambda cache: cache.get_many(["x", "y", "z", "w"])))

    before = hits(a)
    assert many() == {"x": 1, "y": [2], "z": "3"}
    assert hits(a) - before == 3
    call(a, lambda cache: cache.set_many({"y": [20], "w": 4}))
    assert many() == {"x": 1, "y": [20], "z": "3", "w": 4}
    call(a, lambda cache: cache.delete("x"))
    assert many() == {"y": [20], "z": "3", "w": 4}
    call(a, lambda cache: asyncio.run(cache.aset("z", "30")))
    assert many() == {"y": [20], "z": "30", "w": 4}
    call(a, lambda cache: cache.delete("w"))
    assert call(a, lambda cache: cache.get_or_set("w", lambda: "computed")) == "computed"
    assert many() == {"y": [20], "z": "30", "w": "computed"}
    call(a, lambda cache: cache.invalidate_namespace("default"))
    assert many() == {}


def test_every_kind_of_hit_hands_out_a_value_the_caller_may_change(
        make_app: AppFactory, redis_server: RedisProcess) -> None:
    a, _ = two_apps(make_app, f"redis://{redis_server.address}/0")
    call(a, lambda cache: cache.set("k", {"tags": ["t"]}))
    served_locally(a, "k", {"tags": ["t"]})
    before = hits(a)
    for read in (lambda cache: cache.get("k"), lambda cache: cache.get_many(["k"])["k"],
                 lambda cache: cache.get_or_set("k", lambda: None),
                 lambda cache: asyncio.run(cache.aget("k"))):
        value = call(a, read)
        value["tags"].append("changed by the caller")
        value["new"] = 1
    assert hits(a) - before == 4
    assert call(a, lambda cache: cache.get("k")) == {"tags": ["t"]}


# Changes by other clients, and TTLs -----------------------------------------

OTHER_CLIENTS: dict[str, Callable[[Any, str], Any]] = {
    "FLUSHALL": lambda client, name: client.flushall(),
    "FLUSHALL ASYNC": lambda client, name: client.flushall(asynchronous=True),
    "FLUSHDB": lambda client, name: client.flushdb(),
    "DEL": lambda client, name: client.delete(name),
    "UNLINK": lambda client, name: client.unlink(name),
    "PEXPIRE": lambda client, name: client.pexpire(name, 1),
    "MOVE": lambda client, name: client.move(name, 7),
    "RENAME onto it": lambda client, name: (client.set(name + "~", "x"),
                                            client.rename(name + "~", name)),
    "COPY onto it": lambda client, name: (client.set(name + "~", "x"),
                                          client.copy(name + "~", name, replace=True)),
    "SET in MULTI": lambda client, name: client.pipeline(transaction=True).set(
        name, "x").execute(),
    "EVAL": lambda client, name: client.eval("return redis.call('SET', KEYS[1], 'x')", 1, name),
}


@pytest.mark.parametrize("change", list(OTHER_CLIENTS))
def test_a_change_by_any_other_client_drops_the_local_copy(
        make_app: AppFactory, own_redis_server: RedisProcess, change: str) -> None:
    """On a server of its own: FLUSHALL takes every key with it."""
    a, _ = two_apps(make_app, f"redis://{own_redis_server.address}/0")
    call(a, lambda cache: cache.set("k", "old"))
    served_locally(a, "k", "old")
    with own_redis_server.client(decode_responses=False) as client:
        OTHER_CLIENTS[change](client, entry_name(a, "k"))
    past_the_bound()
    assert call(a, lambda cache: cache.get("k")) is None


def test_a_local_copy_does_not_outlive_its_ttl(make_app: AppFactory,
                                               redis_server: RedisProcess) -> None:
    """Entries of 0.6 s held locally: none is served after it (give or take
    the write's own few milliseconds), though the server may not have sent
    their expiry yet."""
    a, _ = two_apps(make_app, f"redis://{redis_server.address}/0")
    call(a, lambda cache: cache.set("warm", 0))
    served_locally(a, "warm", 0)
    ttl, slack = 0.6, 0.02
    call(a, lambda cache: cache.set_many({f"k{i}": i for i in range(20)}, ttl=ttl))
    written = time.monotonic()  # the TTL runs from before this: the write's end
    late: list[float] = []
    while time.monotonic() < written + ttl + 0.3:
        started = time.monotonic()
        found = call(a, lambda cache: cache.get_many([f"k{i}" for i in range(20)]))
        if found and started > written + ttl + slack:
            late.append(round(started - written, 3))
    assert hits(a) > 20, "the entries were never served locally"
    assert not late, f"entries served {late[:3]} s after a {ttl} s TTL"


# Transports and client settings --------------------------------------------

TRANSPORTS = ["decode_responses", "resp3", "acl_user", "requirepass", "tls", "unix_socket",
              "db_5"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_near_cache_works_and_is_invalidated_on_every_transport(
        request: pytest.FixtureRequest, make_app: AppFactory, transport: str) -> None:
    options: dict[str, Any] = {}
    config: dict[str, Any] = {}
    if transport in ("decode_responses", "resp3", "db_5"):
        server = request.getfixturevalue("redis_server")
        url = f"redis://{server.address}/{5 if transport == 'db_5' else 0}"
        if transport == "decode_responses":
            config["REDIS_DECODE_RESPONSES"] = True
        if transport == "resp3":
            options["protocol"] = 3
    elif transport == "acl_user":
        url = f"redis://{ACL_USER}:{ACL_PASSWORD}@{request.getfixturevalue('auth_server').address}"
    elif transport == "requirepass":
        url = f"redis://:{REQUIRE_PASSWORD}@{request.getfixturevalue('auth_server').address}"
    elif transport == "tls":
        url = f"rediss://{request.getfixturevalue('tls_server').address}"
        config.update(request.getfixturevalue("tls_files").config())
    else:
        request.getfixturevalue("redis_server")
        url = f"unix://{request.getfixturevalue('workdir') / 'redis.sock'}?db=1"
    shared = {"REDIS_URL": url, "REDIS_KEY_PREFIX": fresh_prefix(), **config, **near_config()}
    a, b = make_app(shared, **options), make_app(shared, **options)
    call(a, lambda cache: cache.set("k", {"v": "é😀"}))
    served_locally(a, "k", {"v": "é😀"})
    call(b, lambda cache: cache.set("k", "new"))
    served_locally(a, "k", "new")
    call(b, lambda cache: cache.delete("k"))
    past_the_bound()
    assert call(a, lambda cache: cache.get("k")) is None


# close(), fork, logs ---------------------------------------------------------

def test_close_while_threads_read_serves_nothing_stale_and_leaves_no_tracking_behind(
        make_app: AppFactory, redis_server: RedisProcess) -> None:
    """ext.close() five times while four threads read, the other app writing
    between closes: every value read was written, and once the reads stop
    the latest is served locally; the last close leaves no tracking
    connection on the server, no tracking thread, and no local copy."""
    a, b = two_apps(make_app, f"redis://{redis_server.address}/0")
    flask_app, ext = a
    call(a, lambda cache: cache.set("k", 0))
    stop = threading.Event()
    served: set[Any] = set()

    def reader() -> None:
        with cache_of(a) as cache:
            while not stop.is_set():
                # A read racing close() may fail as its connection is closed
                # under it; what it returns must have been written.
                with contextlib.suppress(Exception):
                    served.add(cache.get("k"))

    with redis_server.client() as admin:
        before = {client["id"] for client in admin.client_list()}
    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for value in range(1, 6):
        time.sleep(0.15)
        with flask_app.app_context():
            ext.close()
        with cache_of(b) as cache:
            cache.set("k", value)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert served <= {0, 1, 2, 3, 4, 5}, served
    past_the_bound()
    served_locally(a, "k", 5, timeout=20)
    assert hits(a) > 1
    tracking = call(a, lambda cache: cache.near._tracking)

    def tracking_clients() -> list[dict[str, Any]]:
        with redis_server.client() as admin:
            return [client for client in admin.client_list()
                    if client["id"] not in before and "t" in client["flags"]]

    assert tracking_clients(), "the server shows no tracking connection: nothing to check"
    with flask_app.app_context():
        ext.close()
    wait_until(lambda: not tracking_clients(), 5, "the tracking connections to go")
    assert not tracking._thread.is_alive()
    assert call(a, lambda cache: len(cache.near.entries)) == 0


def test_a_child_forked_while_threads_read_starts_empty_and_hears_later_writes(
        make_app: AppFactory, redis_server: RedisProcess) -> None:
    a, b = two_apps(make_app, f"redis://{redis_server.address}/0")
    call(a, lambda cache: cache.set_many({"k": "parent's", "j": [1]}))
    served_locally(a, "k", "parent's")
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            call(a, lambda cache: (cache.get("k"), cache.get_many(["k", "j", "absent"])))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()

    def child() -> bool:
        signal.alarm(20)  # a hung child fails the test instead of hanging it
        assert call(a, lambda cache: len(cache.near.entries)) == 0
        served_locally(a, "k", "parent's")
        call(b, lambda cache: cache.set("k", f"written after fork {os.getpid()}"))
        past_the_bound()
        assert call(a, lambda cache: cache.get("k")) == f"written after fork {os.getpid()}"
        call(b, lambda cache: cache.set("k", "parent's"))
        return True

    try:
        for _ in range(3):
            time.sleep(0.05)
            assert run_forked(child)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    past_the_bound()
    assert call(a, lambda cache: cache.get("k")) == "parent's"


@pytest.fixture
def channel_less_server(tmp_path: Path) -> Iterator[tuple[RedisProcess, str, str]]:
    """A server with a user that may use every key but no channel, so that
    the near cache's SUBSCRIBE is refused; its name and password."""
    user, password = "nochannels", f"pw-{uuid.uuid4().hex}"
    server = RedisProcess(tmp_path, free_port(), [
        "--user", user, "on", f">{password}", "~*", "+@all", "resetchannels"]).start()
    yield server, user, password
    server.stop()


def test_a_refused_invalidation_connection_turns_hits_off_and_logs_no_password(
        make_app: AppFactory, channel_less_server: tuple[RedisProcess, str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server, user, password = channel_less_server
    app = make_app({"REDIS_URL": f"redis://{user}:{password}@{server.address}/0",
                    **near_config()})
    call(app, lambda cache: cache.set("k", "v"))
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert call(app, lambda cache: cache.get("k")) == "v"
        time.sleep(0.02)
    assert hits(app) == 0
    assert call(app, lambda cache: cache.near.stats()["proven_ms_ago"]) is None
    lines = [f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records]
    refusals = [record for record in caplog.records if record.levelno >= logging.WARNING
                and record.name == "flask_core_redis"]
    assert refusals, "the refused invalidation connection logged nothing: nothing to check"
    assert not [line for line in lines if password in line]
