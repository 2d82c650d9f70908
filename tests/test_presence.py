"""The presence plugin, on memory, standalone, Sentinel and Cluster."""

import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from flask_core_redis.plugins.presence import TooManyConnections, store
from flask_core_redis.plugins.presence.scripts import CLOSE, OPEN, SWEEP

from .servers import run_concurrently, wait_until
from .tcp_proxy import FaultProxy


@pytest.fixture(params=[16, 1], ids=["16-shards", "1-shard"])
def presence(request, mode_app):
    """Every behaviour holds with the data split over shards and in one slot."""
    app, ext = mode_app({"REDIS_PRESENCE_SHARDS": request.param})
    with app.app_context():
        yield ext.presence


class Clock:
    """Presence's clock (the app server's), moved by hand: expiry without sleeping."""

    def __init__(self) -> None:
        self.now_ms = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(store, "_now_ms", clock)
    return clock


def test_seed_api(presence):
    assert presence.is_online("u1") is False
    presence.mark_online("u1", 60)
    assert presence.is_online("u1") is True
    presence.mark_offline("u1")
    assert presence.is_online("u1") is False


def test_user_is_online_while_any_connection_is(presence):
    presence.mark_online("ann", 60, connection_id="tab-1")
    presence.mark_online("ann", 60, connection_id="tab-2")
    assert presence.mark_offline("ann", connection_id="tab-1") is True
    assert presence.is_online("ann")
    assert presence.mark_offline("ann", connection_id="tab-2") is False
    assert not presence.is_online("ann")


def test_a_connection_that_stops_heartbeating_times_out(presence):
    presence.mark_online("crashy", 1, connection_id="worker-that-dies")
    presence.mark_online("steady", 1, connection_id="alive")
    assert presence.online_count() == 2

    def only_steady_left():
        presence.heartbeat("steady", "alive", ttl=1)
        return presence.online_many(["crashy", "steady"]) == {"crashy": False,
                                                              "steady": True}

    wait_until(only_steady_left, 10, "the silent connection to time out", interval=0.2)
    assert presence.online_count() == 1
    assert presence.online_users() == ["steady"]


def test_heartbeat_reports_a_connection_that_had_timed_out(presence):
    presence.mark_online("u", 60, connection_id="c")
    assert presence.heartbeat("u", "c") is True
    assert presence.heartbeat("u", "new-connection") is False
    assert presence.is_online("u")
    assert presence.mark_offline("u", connection_id="c") is False  # never opened by a beat


def test_a_heartbeat_renews_a_timed_out_connection_until_a_sweep_drops_it(presence, clock):
    presence.mark_online("sleepy", 0.3, connection_id="c")
    clock.advance(0.5)
    assert not presence.is_online("sleepy")
    assert presence.heartbeat("sleepy", "c", ttl=60) is True  # timed out, not dropped: renewed
    assert presence.is_online("sleepy")
    presence.mark_online("sleepy", 0.3, connection_id="c")
    clock.advance(0.5)
    assert presence.sweep() == ["sleepy"]
    assert presence.heartbeat("sleepy", "c", ttl=60) is False  # dropped: stays closed
    assert not presence.is_online("sleepy")


def test_online_many_count_and_pages(presence):
    for n in range(25):
        presence.mark_online(f"user-{n}", 60)
    presence.mark_offline("user-3")
    many = presence.online_many(["user-1", "user-3", "stranger", 24])
    assert many == {"user-1": True, "user-3": False, "stranger": False, "24": False}
    assert presence.online_count() == 24
    pages = [presence.online_users(limit=10, offset=offset) for offset in (0, 10, 20)]
    assert [len(page) for page in pages] == [10, 10, 4]
    everyone = [user for page in pages for user in page]
    assert sorted(everyone) == sorted(f"user-{n}" for n in range(25) if n != 3)
    assert presence.online_users(limit=1)[0] == "user-24"  # most recently active first


def test_online_many_takes_ten_thousand_users(presence):
    presence.mark_online("user-4321", 60)
    result = presence.online_many([f"user-{n}" for n in range(10_000)])
    assert len(result) == 10_000
    assert [user for user, online in result.items() if online] == ["user-4321"]


def test_last_seen(presence):
    assert presence.last_seen("nobody") is None
    presence.mark_online("u", 60)
    presence.mark_offline("u")
    seen = presence.last_seen("u")
    assert abs(datetime.now(timezone.utc) - seen) < timedelta(seconds=30)


def test_connect_racing_a_disconnect_of_the_same_user(presence):
    """Each round: tab A connects while tab B disconnects. A must win."""
    for round_number in range(30):
        user = f"racer-{round_number}"
        presence.mark_online(user, 60, connection_id="B")
        run_concurrently(lambda user=user: presence.mark_online(user, 60, connection_id="A"),
                         lambda user=user: presence.mark_offline(user, connection_id="B"))
        assert presence.is_online(user), f"round {round_number}: connection A was lost"
    assert presence.online_count() == 30


@pytest.mark.parametrize(("call", "complaint"), [
    (lambda p: p.mark_online("", 60), "user_id must be a non-empty"),
    (lambda p: p.mark_online(None, 60), "user_id must be"),
    (lambda p: p.mark_online("u", 0), "ttl must be a positive"),
    (lambda p: p.mark_online("u", 60, connection_id=""), "connection_id must be"),
    (lambda p: p.mark_online("a\0b", 60), "without NUL"),
    (lambda p: p.mark_online("u" * 513, 60), "at most 512 characters"),
    (lambda p: p.mark_online("\udc80", 60), "no lone surrogates"),
    (lambda p: p.heartbeat("u", "\0"), "connection_id must be"),
    (lambda p: p.online_many(["ok", "a\0b"]), "NUL"),
    (lambda p: p.is_online("\ud800"), "user_id must be valid Unicode"),
    (lambda p: p.mark_online(10 ** 5000), "user_id must be"),
    (lambda p: p.online_users(limit=0), "limit must be"),
])
def test_bad_input_is_refused(presence, call, complaint):
    with pytest.raises(ValueError, match=complaint):
        call(presence)


def test_keys_stay_under_the_key_prefix(mode_app):
    prefix = f"shop-{uuid.uuid4().hex[:8]}:"  # the servers are shared: a prefix no other test has
    app, ext = mode_app({"REDIS_KEY_PREFIX": prefix})
    with app.app_context():
        ext.presence.mark_online("u", 60, connection_id="c")
        ext.presence.mark_offline("v")
        keys = list(ext.client.scan_iter(match=f"*{prefix[:-1]}*"))
    assert keys and all(key.startswith(prefix + "{presence:") for key in keys), keys
    names = sorted(re.sub(":replies:[0-9]+$", ":replies:*", key.split("}", 1)[1])
                   for key in keys)
    assert names == [":c:u", ":present", ":replies:*", ":users"]  # the open's, for retries


def test_odd_ids_are_kept_apart(presence):
    """Ids with the key layout's own characters, and Unicode, stay distinct."""
    odd = ["a}b", "{x}", "u:c:v", "ünï", "🙂", "a|b=c", "42", " ", "u" * 512]
    for user in odd:
        presence.mark_online(user, 60, connection_id=f"{user[:9]}}}:c")
    assert presence.online_many([*odd, "a", "x", "u"]) == {
        **{user: True for user in odd}, "a": False, "x": False, "u": False}
    assert presence.online_count() == len(odd)
    for user in odd:
        assert presence.mark_offline(user, connection_id=f"{user[:9]}}}:c") is False
    assert presence.online_count() == 0


def test_a_crashed_connection_leaves_nothing_behind(mode_app, clock):
    app, ext = mode_app()
    with app.app_context():
        presence = ext.presence
        presence.mark_online("ghost", 0.5, connection_id="worker-7")
        presence.mark_online("alive", 60, connection_id="worker-1")
        heard = []
        presence.on_offline(heard.append)
        clock.advance(0.7)
        assert presence.sweep() == ["ghost"]
        assert heard == ["ghost"]
        assert presence.sweep() == []  # announced once
        assert presence.is_online("ghost") is False
        assert presence.last_seen("ghost") is not None
        left = list(ext.client.scan_iter(match=f"{ext.settings.key_prefix}{{presence*ghost*"))
        assert all(ext.client.pttl(key) > 0 for key in ext.client.scan_iter(
            match=f"{ext.settings.key_prefix}{{presence*:repl*"))  # replies, for retries
        assert left == []


@pytest.mark.parametrize("shards", [16, 1])
def test_the_replies_kept_for_retries_take_a_few_keys_not_one_per_call(mode_app, shards):
    """Opens and closes keep their replies as records in one string per shard
    and second: a reconnect storm adds no key per call."""
    app, ext = mode_app({"REDIS_PRESENCE_SHARDS": shards})
    with app.app_context():
        started = int(time.time())
        for n in range(100):
            ext.presence.connect(f"user-{n}", "tab")
        for n in range(50):
            ext.presence.disconnect(f"user-{n}", "tab")
        seconds = int(time.time()) - started + 1
        kept = list(ext.client.scan_iter(match=f"{ext.settings.key_prefix}{{presence*:repl*"))
    assert kept and all(":replies:" in key for key in kept), kept
    assert len(kept) <= shards * seconds


def test_a_user_cannot_hold_more_connections_than_the_cap(mode_app, clock):
    app, ext = mode_app({"REDIS_PRESENCE_MAX_CONNECTIONS": 3})
    with app.app_context():
        presence = ext.presence
        for tab in range(3):
            presence.mark_online("greedy", 60, connection_id=f"tab-{tab}")
        with pytest.raises(TooManyConnections, match="already holds 3 live connections"):
            presence.connect("greedy", "tab-3")
        assert presence.heartbeat("greedy", "tab-3") is False  # was not opened
        presence.mark_online("greedy", 30, connection_id="tab-0")  # renewing is not opening
        presence.mark_offline("greedy", connection_id="tab-1")
        presence.connect("greedy", "tab-3")  # a freed place
        presence.mark_online("greedy", 0.3, connection_id="tab-2")
        with pytest.raises(TooManyConnections):
            presence.connect("greedy", "tab-4")
        clock.advance(0.5)  # tab-2 expired: it no longer counts
        presence.connect("greedy", "tab-4")
        presence.mark_online("other", 60, connection_id="tab-0")  # the cap is per user
        assert presence.online_count() == 2
        presence.mark_offline("greedy")
        assert not presence.is_online("greedy")


def test_the_default_connection_and_named_ones_mix(presence):
    presence.mark_online("mix", 60)  # the one-connection API
    assert presence.connect("mix", "tab") is False  # was already online
    assert presence.mark_offline("mix", connection_id="tab") is True  # default still open
    assert presence.heartbeat("mix") is True
    presence.mark_online("mix", 60, connection_id="tab")
    assert presence.mark_offline("mix", connection_id="~") is True
    assert presence.heartbeat("mix") is False  # closed, and not reopened by the beat
    assert presence.mark_offline("mix", connection_id="tab") is False
    assert not presence.is_online("mix")


@pytest.mark.parametrize("mode", ["cluster"])
def test_presence_keys_spread_over_the_cluster(mode_app, cluster):
    app, ext = mode_app()
    with app.app_context():
        for n in range(200):
            ext.presence.mark_online(f"user-{n}", 60, connection_id="tab")
        assert ext.presence.online_count() == 200
        keys = list(ext.client.scan_iter(match=f"{ext.settings.key_prefix}{{presence*"))
        slots = {int(ext.client.execute_command("CLUSTER KEYSLOT", key)) for key in keys}
    assert len(slots) == 16
    masters = {cluster.master_of(key).port for key in keys}
    assert len(masters) == 3, "every master holds presence data"


def test_cli_count_and_list(mode_app):
    app, ext = mode_app()
    with app.app_context():
        ext.presence.mark_online("ann", 60)
        ext.presence.mark_online("bob", 60)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["redis", "presence", "count"]).output == "2\n"
    listed = runner.invoke(args=["redis", "presence", "list", "--limit", "5"]).output
    assert sorted(listed.split()) == ["ann", "bob"]


def test_health_reports_online_count(mode_app):
    app, ext = mode_app()
    with app.app_context():
        ext.presence.mark_online("ann", 60)
        assert ext.health()["plugins"]["presence"] == {"online": 1}


@pytest.fixture
def lossy_presence(make_app, own_redis_server):
    """Presence through a proxy that can drop the reply to one command: the
    retry policy then sends that command again."""
    with FaultProxy(own_redis_server.port) as proxy:
        app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{proxy.port}",
                             "REDIS_SOCKET_TIMEOUT": 200, "REDIS_MAX_RETRIES": 1})
        with app.app_context():
            presence = ext.presence
            heard = []
            presence.on_offline(heard.append)
            presence.connect("warm-up", "c")  # the scripts are loaded
            presence.disconnect("warm-up", "c")
            presence.sweep()
            yield proxy, presence, heard


def test_a_close_whose_reply_is_lost_still_reports_the_user_offline(lossy_presence):
    proxy, presence, _ = lossy_presence
    presence.connect("ann", "tab")
    proxy.lose_reply_to(CLOSE.sha)
    assert presence.disconnect("ann", "tab") is True  # not "already offline"
    assert proxy.replies_lost == 1
    assert not presence.is_online("ann")


def test_an_open_whose_reply_is_lost_still_reports_the_user_coming_online(lossy_presence):
    proxy, presence, _ = lossy_presence
    proxy.lose_reply_to(OPEN.sha)
    assert presence.connect("bob", "tab") is True  # not "was online already"
    assert proxy.replies_lost == 1


def test_a_sweep_whose_reply_is_lost_still_announces_the_users(lossy_presence, clock):
    proxy, presence, heard = lossy_presence
    presence.connect("gone", "tab", ttl=0.3)
    clock.advance(0.5)
    proxy.lose_reply_to(SWEEP.sha)
    assert "gone" in presence.sweep()
    assert proxy.replies_lost == 1
    assert heard.count("gone") == 1


def test_heartbeat_many_answers_each_connection(presence):
    presence.mark_online("solo", 60)
    presence.connect("tabs", "a")
    presence.connect("tabs", "b")
    presence.mark_offline("tabs", connection_id="b")
    assert presence.heartbeat_many([("solo", "~"), ("tabs", "a"), ("tabs", "b"),
                                    ("tabs", "~"), ("nobody", "~"), ("nobody", "x")],
                                   ttl=60) == [True, True, False, False, False, False]
    assert presence.heartbeat_many([]) == []
    assert presence.online_count() == 2


def test_a_heartbeat_of_a_connection_not_open_keeps_no_one_online(presence, clock):
    presence.connect("u", "a", ttl=0.3)
    presence.connect("v", "a", ttl=60)
    presence.mark_offline("v", connection_id="a")
    clock.advance(0.5)
    assert presence.heartbeat("u", "never-opened", ttl=60) is False
    assert presence.heartbeat("v", "a", ttl=60) is False  # closed
    assert presence.online_many(["u", "v"]) == {"u": False, "v": False}
    assert presence.online_count() == 0


def test_a_user_whose_connections_expired_unswept_is_announced_offline_then_online(
        presence, clock):
    heard = []
    presence.on_offline(heard.append)
    presence.connect("u", "a", ttl=0.3)
    clock.advance(0.5)
    assert presence.connect("u", "b") is True
    assert heard == ["u"]  # the offline nobody had announced, before the online
    assert presence.sweep() == []


def test_a_failing_listener_neither_hides_the_others_nor_fails_the_call(presence, clock,
                                                                       caplog):
    heard = []

    def broken(user):
        raise RuntimeError("emit failed")

    presence.on_offline(broken)
    presence.on_offline(heard.append)
    for user in ("x", "y"):
        presence.connect(user, "a", ttl=0.3)
    clock.advance(0.5)
    assert sorted(presence.sweep()) == ["x", "y"]
    assert sorted(heard) == ["x", "y"]
    assert "an on_offline listener failed" in caplog.text


@pytest.mark.parametrize("mode", [pytest.param("standalone", marks=pytest.mark.integration)])
def test_a_user_with_many_connections_keeps_them_in_a_skip_list(mode_app):
    """Renewing one of a user's connections is O(log n), not a scan of a flat list."""
    app, ext = mode_app()
    with app.app_context():
        presence = ext.presence
        for tab in range(15):
            presence.connect("busy", f"tab-{tab}")
        held = presence._shards.of("busy").held("busy")
        assert ext.client.object("encoding", held) == "listpack"
        presence.connect("busy", "tab-15")
        assert ext.client.object("encoding", held) == "skiplist"
        assert ext.client.zcard(held) == 16  # the long member that forced it is gone
        presence.mark_offline("busy", connection_id="tab-0")
        assert ext.client.object("encoding", held) == "skiplist"
        assert presence.heartbeat_many([("busy", f"tab-{tab}") for tab in range(17)]) == [
            False, *[True] * 15, False]
