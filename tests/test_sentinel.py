"""Sentinel: one master, one replica, three sentinels, all real processes."""

import gc
import logging
import os
import random
import signal
import threading
import time

import pytest
import redis
from flask import Flask

from flask_core_redis import CoreRedis
from flask_core_redis.connection.sentinel.view import CONFIRMATION_SECONDS
from flask_core_redis.integrations.queues import queue

from .servers import (
    free_port,
    health_version,
    run_concurrently,
    run_forked,
    sockets_to,
    wait_until,
    write_until,
)

pytestmark = pytest.mark.integration


def test_commands_go_to_the_master(make_app, sentinel, key):
    app, ext = make_app({"REDIS_URL": sentinel.url})
    with app.app_context():
        ext.client.set(key, "via-sentinel")
        report = ext.health()
    master = sentinel.process_on(sentinel.master_port())
    with master.client() as admin:
        assert admin.get(key) == "via-sentinel"
        assert report["server_version"] == health_version(admin.info("server"))
    assert (report["ok"], report["mode"], report["role"]) == (True, "sentinel", "master")


def test_sentinel_keys_select_sentinel_mode(make_app, sentinel, key):
    app, ext = make_app({
        "REDIS_SENTINELS": ",".join(s.address for s in sentinel.sentinels),
        "REDIS_SENTINEL_MASTER": sentinel.master_name, "REDIS_DB": 2})
    with app.app_context():
        ext.client.set(key, "db2")
    with sentinel.process_on(sentinel.master_port()).client(db=2) as admin:
        assert admin.get(key) == "db2"


def test_unknown_master_name_is_a_connection_error_after_retries(make_app, sentinel,
                                                                  caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    hosts = ",".join(s.address for s in sentinel.sentinels)
    app, ext = make_app({"REDIS_URL": f"redis+sentinel://{hosts}/no-such-master",
                         "REDIS_MAX_RETRIES": 2})
    with app.app_context(), pytest.raises(redis.ConnectionError, match="no-such-master"):
        ext.client.ping()
    retries = [r.getMessage() for r in caplog.records if ": retry " in r.getMessage()]
    assert [m.rsplit(": ", 1)[1] for m in retries] == ["retry 1 in 50 ms", "retry 2 in 100 ms"]


def test_retry_policy_survives_master_for(make_app):
    """redis-py's Sentinel.master_for must keep the configured Retry."""
    app, ext = make_app({"REDIS_URL": f"redis+sentinel://127.0.0.1:{free_port()}/m",
                         "REDIS_MAX_RETRIES": 3})
    with app.app_context(), pytest.raises(redis.ConnectionError):
        ext.client.ping()
    with app.app_context():
        connection = ext.client.connection_pool.make_connection()
    assert connection.retry.get_retries() == 3
    assert [connection.retry._backoff.compute(n) for n in (1, 2, 40)] == [0.05, 0.1, 2.0]


def test_forced_failover_moves_writes_to_the_new_master(make_app, own_sentinel, key):
    # The deadline: on a starved machine (the suite run with both cores busy)
    # the sentinels may fail the new master over again, on their own, while
    # the writes below run; they wait for its outcome instead of failing.
    app, ext = make_app({"REDIS_URL": own_sentinel.url, "REDIS_CONNECT_TIMEOUT": 500,
                         "REDIS_RETRY_DEADLINE": 30_000})
    old_port = own_sentinel.master_port()
    with app.app_context():
        client = ext.client
        client.incr(key)  # leaves a pooled connection open to the master
        with own_sentinel.sentinels[0].client() as sentinel_admin:
            sentinel_admin.execute_command("SENTINEL", "FAILOVER", own_sentinel.master_name)
        wait_until(lambda: own_sentinel.master_port() != old_port, 30, "the promotion")
        old = own_sentinel.process_on(old_port)
        wait_until(lambda: old.client().info("replication")["role"] == "slave", 30,
                   "the old master to be demoted")
        for _ in range(20):
            client.incr(key)
    with own_sentinel.process_on(own_sentinel.master_port()).client() as admin:
        assert int(admin.get(key)) == 21


@pytest.mark.parametrize("pool", [{}, {"REDIS_MAX_CONNECTIONS": 5, "REDIS_POOL_TIMEOUT": 1000}],
                         ids=["plain pool", "blocking pool"])
def test_writes_follow_a_failover_before_the_old_master_is_demoted(make_app, own_sentinel,
                                                                   key, pool):
    """The sentinels demote the old master some ten seconds after they name
    a new one, and until then it takes writes, which it loses when demoted.
    A pool in use asks the sentinels where the master is every second, so
    its connections leave the old master long before that."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url, **pool})
    old_port = own_sentinel.master_port()
    old = own_sentinel.process_on(old_port)
    with app.app_context():
        client = ext.client
        client.set(key, "before")  # a pooled connection to the old master
        with own_sentinel.sentinels[0].client() as sentinel_admin:
            sentinel_admin.execute_command("SENTINEL", "FAILOVER", own_sentinel.master_name)
        wait_until(lambda: own_sentinel.master_port() != old_port, 30, "the promotion")
        new_port = own_sentinel.master_port()
        wait_until(lambda: client.ping() and client.connection_pool.master_address[1]
                   == new_port, 10, "the pool to learn of the new master", interval=0.2)
        for number in range(20):
            client.set(f"{key}:{number}", number)
        with old.client() as admin:  # the window this test is about
            assert admin.info("replication")["role"] == "master"
    with own_sentinel.process_on(new_port).client() as admin:
        assert admin.mget([f"{key}:{n}" for n in range(20)]) == [str(n) for n in range(20)]


def test_readonly_from_a_demoted_master_reconnects_to_the_current_one(make_app, sentinel,
                                                                      key, caplog):
    """A connection left on a demoted master (Sentinel's CLIENT KILL missed it)
    gets READONLY: the write must be retried on the master, not raised."""
    caplog.set_level(logging.INFO, "flask_core_redis")
    app, ext = make_app({"REDIS_URL": sentinel.url})
    master_port = sentinel.master_port()
    replica_port = next(p.port for p in (sentinel.master, sentinel.replica)
                        if p.port != master_port)
    with app.app_context():
        pinned = redis.Redis(connection_pool=ext.client.connection_pool,
                             single_connection_client=True)
        stale = pinned.connection
        stale.disconnect()
        # Stage what a missed CLIENT KILL leaves behind: a live socket to a
        # server that is no longer the master, opened without asking sentinels.
        stale.host, stale.port = "127.0.0.1", replica_port
        stale._sock = redis.connection.Connection._connect(stale)
        stale.on_connect()
        assert pinned.incr(key) == 1
        pinned.close()
    with sentinel.process_on(master_port).client() as admin:
        assert admin.get(key) == "1"
    logged = [r.getMessage() for r in caplog.records]
    assert f"[REDIS] 127.0.0.1:{replica_port}: disconnected: ReadOnlyError: You can't " \
           "write against a read only replica." in logged
    assert f"[REDIS] 127.0.0.1:{master_port}: connected" in logged


def test_killed_master_writes_resume_on_the_new_master_within_10s(make_app, own_sentinel,
                                                                  key, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    app, ext = make_app({"REDIS_URL": own_sentinel.url, "REDIS_CONNECT_TIMEOUT": 500})
    errors: list[Exception] = []
    with app.app_context():
        client = ext.client
        write_until(client, key, 5, errors)
        old_master = own_sentinel.process_on(own_sentinel.master_port())
        old_master.kill()
        killed_at = time.monotonic()
        resumed_at = write_until(client, key, 30, errors)
    assert resumed_at - killed_at <= 10, f"writes resumed after {resumed_at - killed_at:.1f}s"
    new_port = own_sentinel.replica.port
    own_sentinel.wait_for_master(new_port)
    with own_sentinel.replica.client() as admin:
        assert admin.info("replication")["role"] == "master"
        assert int(admin.get(key)) >= 1
    logged = [r.getMessage() for r in caplog.records]
    assert any("disconnected" in m or "connection error" in m for m in logged)
    assert any(m.endswith(f"127.0.0.1:{new_port}: connected") for m in logged)


def test_health_answers_when_every_sentinel_hangs(make_app, own_sentinel):
    """Three sentinels stopped by SIGSTOP: health() answers within its bound,
    and says the master could not be confirmed."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url, "REDIS_CONNECT_TIMEOUT": 400})
    outcome = {}

    def health():
        with app.app_context():
            outcome["report"] = ext.health()

    for sentinel in own_sentinel.sentinels:
        sentinel.signal(signal.SIGSTOP)
    try:
        checker = threading.Thread(target=health, daemon=True)
        checker.start()
        checker.join(60)
        assert not checker.is_alive()
    finally:
        for sentinel in own_sentinel.sentinels:
            sentinel.signal(signal.SIGCONT)
    report = outcome["report"]
    assert report["ok"] is False
    assert report["error"].startswith("MasterNotFoundError: No master found for 'mymaster'")


def test_a_reply_that_fails_to_decode_does_not_break_the_next_command(make_app, sentinel):
    """A pickled value read through the decoding client: the read fails, and the
    connection is closed, so the next command does not read the rest of it."""
    app, ext = make_app({"REDIS_URL": sentinel.url})
    with app.app_context():
        ext.get_client(decode_responses=False).set("pickled", b"\x80\x04\xff")
        with pytest.raises(UnicodeDecodeError):
            ext.client.get("pickled")
        assert ext.client.set("after", "ok")
        assert ext.client.get("after") == "ok"


def test_a_failed_master_lookup_is_logged_under_the_masters_name(make_app, events_log):
    down = f"127.0.0.1:{free_port()}"
    app, ext = make_app({"REDIS_URL": f"redis+sentinel://{down}/nowhere",
                         "REDIS_MAX_RETRIES": 0})
    with app.app_context(), pytest.raises(redis.ConnectionError):
        ext.client.ping()
    errors = [record.getMessage() for record in events_log.records
              if "connection error" in record.getMessage()]
    assert errors and all("master 'nowhere' (not found yet)" in line for line in errors)
    assert "6379" not in events_log.text


def timed(app, call):
    """``call()`` in ``app``'s context: the seconds it took, and the error it
    raised (None if it returned)."""
    started = time.monotonic()
    with app.app_context():
        try:
            call()
        except redis.RedisError as error:
            return time.monotonic() - started, error
    return time.monotonic() - started, None


def test_hung_sentinels_bound_every_call(make_app, own_sentinel, key):
    """Every sentinel stopped by SIGSTOP, the master healthy. A connect
    attempt, master lookup included, takes at most REDIS_CONNECT_TIMEOUT, so
    a call takes at most (MAX_RETRIES + 1) attempts and the delays between
    them (default retries, a 1 s attempt: 4.3 s; they took 24 s, each
    attempt asking the sentinels one after another, twice), or the deadline
    and one attempt under REDIS_RETRY_DEADLINE; the fail-open cache answers
    a miss within the same bound. A pool that held a connection before the
    hang hands it out no more once the sentinels have not confirmed the
    master for two seconds: it fails within the bound too, and writes
    nothing."""
    url = own_sentinel.url
    counted, counted_ext = make_app({"REDIS_URL": url, "REDIS_CONNECT_TIMEOUT": 1000})
    deadline, deadline_ext = make_app({"REDIS_URL": url, "REDIS_CONNECT_TIMEOUT": 500,
                                       "REDIS_RETRY_DEADLINE": 1000})
    cache, cache_ext = make_app({"REDIS_URL": url, "REDIS_CONNECT_TIMEOUT": 500})
    used, used_ext = make_app({"REDIS_URL": url, "REDIS_CONNECT_TIMEOUT": 1000})
    with used.app_context():
        used_ext.client.set(key, "before the hang")
    for sentinel in own_sentinel.sentinels:
        sentinel.signal(signal.SIGSTOP)
    try:
        time.sleep(2.5)  # the last confirmation lapses (CONFIRMATION_SECONDS)
        outcomes = run_concurrently(
            lambda: timed(counted, lambda: counted_ext.client.set(key, "counted")),
            lambda: timed(deadline, lambda: deadline_ext.client.set(key, "deadline")),
            lambda: timed(cache, lambda: cache_ext.cache.get("anything")),
            lambda: timed(used, lambda: used_ext.client.set(key, "after the hang")))
    finally:
        for sentinel in own_sentinel.sentinels:
            sentinel.signal(signal.SIGCONT)
    delays = 0.05 + 0.10 + 0.15
    bounds = [4 * 1.0 + delays, 1.0 + 0.5 + 0.05, 4 * 0.5 + delays, 4 * 1.0 + delays]
    for (seconds, error), bound, name in zip(outcomes, bounds,
                                             ["counted", "deadline", "cache", "used"],
                                             strict=True):
        assert seconds <= bound + 0.5, f"{name}: {seconds:.1f} s, bound {bound:.1f} s"
        if name != "cache":
            assert isinstance(error, redis.ConnectionError), f"{name}: {error!r}"
            assert "No master found for 'mymaster'" in str(error), f"{name}: {error}"
    assert outcomes[2][1] is None  # the cache failed open: a miss, no error
    with own_sentinel.process_on(own_sentinel.master_port()).client() as admin:
        assert admin.get(key) == "before the hang"


def test_a_pool_idle_across_a_failover_writes_to_the_new_master(make_app, own_sentinel, key):
    """After a SENTINEL FAILOVER that no pool saw (no traffic while it ran),
    each pool's first write goes to the new master, never to the old one,
    which takes writes (and loses them) until the sentinels demote it: the
    shared, bytes, fail-fast and RQ's pools alike."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url})
    old_port = own_sentinel.master_port()
    with app.app_context():
        pools = {"shared": ext.client, "bytes": ext.get_client(decode_responses=False),
                 "fail-fast": ext.plugins["presence"].context.fail_fast_client(),
                 "rq": queue(ext, "default").connection}
        for name, client in pools.items():  # each holds a connection to the old master
            client.set(f"{key}:{name}", "before")
        with own_sentinel.sentinels[0].client() as sentinel_admin:
            sentinel_admin.execute_command("SENTINEL", "FAILOVER", own_sentinel.master_name)
        new_port = next(p.port for p in (own_sentinel.master, own_sentinel.replica)
                        if p.port != old_port)
        own_sentinel.wait_for_master(new_port, 30)
        for name, client in pools.items():
            client.set(f"{key}:{name}", "after")
        with own_sentinel.process_on(old_port).client() as old:  # the window this is about
            assert old.info("replication")["role"] == "master"
    with own_sentinel.process_on(new_port).client() as admin:
        assert admin.mget([f"{key}:{name}" for name in pools]) == ["after"] * len(pools)


def watch_threads(deployment):
    """The threads of the watches that follow ``deployment``'s sentinels;
    other tests' are not counted."""
    return [t for t in threading.enumerate() if t.name.startswith("flask-core-redis")
            and deployment.sentinels[0].address in t.name]


def test_close_leaves_no_thread_and_no_sentinel_socket(make_app, own_sentinel, key):
    """1,000 times: clients made, used once and closed, at a random moment of
    the watch's start (subscribing, asking, pinging). Each time close()
    returns, no thread of the watch is left, and no socket to a sentinel."""
    ports = [sentinel.port for sentinel in own_sentinel.sentinels]
    app, ext = make_app({"REDIS_URL": own_sentinel.url})
    rng = random.Random(19)
    with app.app_context():
        for cycle in range(1000):
            ext.client.incr(key)
            time.sleep(rng.choice([0, 0, 0.001, 0.005, 0.02]))
            ext.close()
            assert not watch_threads(own_sentinel), f"cycle {cycle}: {watch_threads(own_sentinel)}"
            assert not sockets_to(ports), f"cycle {cycle}: sockets to {sockets_to(ports)}"
    with own_sentinel.process_on(own_sentinel.master_port()).client() as admin:
        assert admin.get(key) == "1000"


def test_a_forked_child_follows_the_master_with_a_watch_of_its_own(make_app, own_sentinel,
                                                                     key):
    """A pre-forking server's worker, or RQ's work horse: the child does not
    use the parent's watch (its thread is not there, its sockets are the
    parent's) but starts one of its own, and confirms the master with it
    before its first command. Its writes across a failover that starts at
    once all land on the new master (with the parent's view, for the two
    seconds it lasted, they went to the old one: acknowledged, then lost);
    the parent's watch goes on."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url})
    old_port = own_sentinel.master_port()
    with app.app_context():
        ext.client.set(key, 0)

        def child() -> bool:
            with app.app_context():
                with own_sentinel.sentinels[0].client() as sentinel_admin:
                    sentinel_admin.execute_command("SENTINEL", "FAILOVER",
                                                   own_sentinel.master_name)
                acknowledged, ends = 0, time.monotonic() + 30
                while time.monotonic() < ends and (
                        acknowledged < 50 or ext.client.connection_pool.master_address[1]
                        == old_port):
                    ext.client.incr(key)
                    acknowledged += 1
                with own_sentinel.process_on(
                        ext.client.connection_pool.master_address[1]).client() as new:
                    names = [t.name for t in watch_threads(own_sentinel)]
                    return (int(new.get(key)) == acknowledged and
                            sum("sentinel watch" in name for name in names) == 1)

        assert run_forked(child)
        own_sentinel.wait_for_master(ext.client.connection_pool.master_address[1], 30)
        assert ext.client.incr(key) > 50


def test_a_forked_child_lets_go_of_its_parents_sentinel_sockets(make_app, own_sentinel):
    """The child closes its copies of the watch's sockets: once the parent
    closes its watch, no sentinel keeps a subscription for the child's
    lifetime (a pre-forking server's workers live for days)."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url})
    ports = [sentinel.port for sentinel in own_sentinel.sentinels]
    with app.app_context():
        ext.client.ping()
        wait_until(lambda: len(sockets_to(ports)) == 3, 10, "the three subscriptions")
        reading, writing = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker that does not use Redis, until told to end
            os.close(writing)
            os.read(reading, 1)
            os._exit(0)
        os.close(reading)
        try:
            ext.close()
            wait_until(lambda: not any(subscribers(sentinel) for sentinel in
                                       own_sentinel.sentinels), 10,
                       "the sentinels to drop the subscriptions")
        finally:
            os.write(writing, b"x")
            os.close(writing)
            os.waitpid(pid, 0)


def subscribers(sentinel) -> int:
    with sentinel.client() as admin:
        return sum(1 for client in admin.client_list()
                   if client.get("sub") != "0" or client.get("psub") != "0")


def test_an_app_dropped_without_close_leaves_nothing_running(own_sentinel, key):
    """An app that is used, then dropped without ext.close() (an app factory
    per test or per tenant): once it is collected, its watch stops, and no
    thread or sentinel socket is left. The watch's threads hold nothing of
    the app: not its registration, nor the context it was started in."""
    ports = [sentinel.port for sentinel in own_sentinel.sentinels]

    def use_and_drop():
        app = Flask("dropped")
        app.config.update(REDIS_URL=own_sentinel.url, REDIS_DISABLED_PLUGINS="otp")
        ext = CoreRedis(app)
        with app.app_context():
            ext.client.incr(key)

    for _ in range(5):
        use_and_drop()
    gc.collect()
    wait_until(lambda: not watch_threads(own_sentinel) and not sockets_to(ports), 10,
               "the dropped apps' watches to stop")


def test_a_watch_started_again_after_close_is_closed_by_the_next_close(make_app,
                                                                       own_sentinel):
    """A client kept from before ext.close() and used once the master's last
    confirmation has lapsed starts the watch again; the next ext.close()
    stops it too."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url})
    with app.app_context():
        kept = ext.client
        kept.ping()
        ext.close()
        time.sleep(CONFIRMATION_SECONDS + 0.5)  # the view lapses
        kept.ping()
        assert watch_threads(own_sentinel)
        ext.close()
    assert not watch_threads(own_sentinel)
    assert not sockets_to([sentinel.port for sentinel in own_sentinel.sentinels])


def test_a_log_handler_that_blocks_does_not_stall_commands(make_app, own_sentinel, key):
    """The watch's events (a sentinel lost, here) go to the logging handlers
    and plugin hooks from a thread of their own: one that blocks for seconds
    (a mail or webhook handler) holds no command back."""
    blocking = BlockingHandler()
    logging.getLogger("flask_core_redis").addHandler(blocking)
    app, ext = make_app({"REDIS_URL": own_sentinel.url, "REDIS_CONNECT_TIMEOUT": 1000})
    try:
        with app.app_context():
            ext.client.incr(key)
            own_sentinel.sentinels[0].kill()  # "lost the subscription": a WARNING
            slowest, ends = 0.0, time.monotonic() + 4
            while time.monotonic() < ends:
                started = time.monotonic()
                ext.client.incr(key)
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.01)
        assert blocking.blocked, "the handler was never called: the test proved nothing"
        assert slowest < 1.0, f"a command waited {slowest:.1f} s"
    finally:
        blocking.unblock.set()
        logging.getLogger("flask_core_redis").removeHandler(blocking)


class BlockingHandler(logging.Handler):
    """Blocks on WARNING and above until unblocked (at most 6 s). (Not
    ``release``: that is the handler's lock method, which logging.shutdown
    calls on every handler still alive, as uvicorn's logging setup does.)"""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.unblock = threading.Event()
        self.blocked = False

    def emit(self, record):
        self.blocked = True
        self.unblock.wait(6)


@pytest.mark.parametrize("pool", [{}, {"REDIS_POOL_TIMEOUT": 1000}],
                         ids=["plain pool", "blocking pool"])
def test_a_connection_given_back_after_the_master_moved_frees_its_slot(make_app,
                                                                       own_sentinel, pool):
    """A connection out on the old master (a pipeline under way, say) given
    back after the move is closed and kept: with a pool of one connection,
    the next command still gets it (redis-py before 8 dropped it without
    freeing its slot, and every later command found the pool full)."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url, "REDIS_MAX_CONNECTIONS": 1, **pool})
    with app.app_context():
        client = ext.client
        client.ping()
        pool_ = client.connection_pool
        connection = pool_.get_connection()
        old = pool_.master_address
        with own_sentinel.sentinels[0].client() as sentinel_admin:
            sentinel_admin.execute_command("SENTINEL", "FAILOVER", own_sentinel.master_name)
        wait_until(lambda: pool_.master_address != old, 30, "the watch to hear of the move")
        pool_.release(connection)
        assert client.ping()
        assert pool_.get_master_address() == pool_.master_address  # redis-py's own call


def test_a_command_stuck_on_a_hung_master_is_retried_on_its_successor(make_app, own_sentinel,
                                                                      key):
    """An INCR sent to a master that hangs (SIGSTOP), which the sentinels then
    replace: when the watch hears of the promotion, the INCR's socket is shut
    down and the INCR retried on the new master. The old master, resumed,
    would have run it and answered, and the INCR been acknowledged, then
    lost when the sentinels demoted it."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url})
    old_port = own_sentinel.master_port()
    old = own_sentinel.process_on(old_port)
    new_port = next(p.port for p in (own_sentinel.master, own_sentinel.replica)
                    if p.port != old_port)
    outcome = {}
    with app.app_context():
        client = ext.client
        client.ping()
        old.signal(signal.SIGSTOP)
        try:
            sent = threading.Event()

            def incr():
                with app.app_context():
                    sent.set()
                    outcome["value"] = client.incr(key)

            stuck = threading.Thread(target=incr, daemon=True)
            stuck.start()
            sent.wait(5)
            own_sentinel.wait_for_master(new_port, 30)
            wait_until(lambda: client.connection_pool.master_address == ("127.0.0.1", new_port),
                       10, "the watch to hear of the promotion", interval=0.05)
        finally:
            old.signal(signal.SIGCONT)
        stuck.join(30)
    assert outcome == {"value": 1}
    with own_sentinel.process_on(new_port).client() as admin:
        assert admin.get(key) == "1"
