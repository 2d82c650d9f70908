"""The presence plugin, on memory, standalone, Sentinel and Cluster."""

from datetime import datetime, timedelta, timezone

import pytest

from .servers import run_concurrently, wait_until


@pytest.fixture
def presence(mode_app):
    app, ext = mode_app()
    with app.app_context():
        yield ext.presence


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
    (lambda p: p.mark_online("a|b", 60), "without '|', '=' or NUL"),
    (lambda p: p.online_users(limit=0), "limit must be"),
])
def test_bad_input_is_refused(presence, call, complaint):
    with pytest.raises(ValueError, match=complaint):
        call(presence)


def test_keys_stay_under_the_key_prefix(mode_app):
    app, ext = mode_app({"REDIS_KEY_PREFIX": "shop-a:"})
    with app.app_context():
        ext.presence.mark_online("u", 60, connection_id="c")
        keys = list(ext.client.scan_iter(match="*shop-a:presence*"))
    assert sorted(keys) == ["{shop-a:presence}:conns", "{shop-a:presence}:online",
                            "{shop-a:presence}:sweep"]


def test_a_crashed_connection_leaves_nothing_behind(mode_app):
    app, ext = mode_app()
    with app.app_context():
        presence = ext.presence
        presence.mark_online("ghost", 1, connection_id="worker-7")
        conns = f"{{{ext.settings.key_prefix}presence}}:conns"
        assert ext.client.hexists(conns, "ghost")

        def swept():
            presence.mark_online("someone-else", 60)  # every write sweeps a few entries
            return not ext.client.hexists(conns, "ghost")

        wait_until(swept, 10, "the sweep to drop the dead connection", interval=0.2)
        assert presence.is_online("ghost") is False
        assert presence.last_seen("ghost") is not None


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
