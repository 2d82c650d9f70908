"""The presence plugin's async forms (aconnect, adisconnect, aheartbeat,
amark_online, ...): the same scripts and answers as the sync forms, on
memory, one server and Cluster."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from flask_core_redis.plugins.presence import TooManyConnections, store
from flask_core_redis.plugins.presence.scripts import CLOSE, SWEEP

from . import test_presence
from .test_presence_model import CAP, Clock, lose_every_script_reply_once, presence_machine

#: test_presence's fixtures; ``presence`` on the embedded server (see ``mode``).
presence, clock, lossy_presence = (test_presence.presence, test_presence.clock,
                                   test_presence.lossy_presence)


@pytest.fixture
def mode():
    """The unit tests here run on the embedded server (test_presence's fixtures)."""
    return "memory"


def test_a_user_comes_online_and_goes_offline_through_the_async_forms(presence):
    async def session():
        came_online = [await presence.aconnect("ann", "tab-1"),
                       await presence.aconnect("ann", "tab-2")]
        await presence.amark_online("bob", 60)
        asked = [await presence.ais_online("ann"), await presence.aonline_many(["ann", "x"]),
                 await presence.aonline_count(), sorted(await presence.aonline_users())]
        beats = [await presence.aheartbeat("ann", "tab-1"), await presence.aheartbeat("ann"),
                 await presence.aheartbeat_many([("bob", "~"), ("ann", "tab-2")], ttl=60)]
        went_offline = [await presence.adisconnect("ann", "tab-1"),
                        await presence.adisconnect("ann", "tab-2"),
                        await presence.amark_offline("bob")]
        return came_online, asked, beats, went_offline, await presence.alast_seen("ann")

    came_online, asked, beats, went_offline, seen = asyncio.run(session())
    assert came_online == [True, False]
    assert asked == [True, {"ann": True, "x": False}, 2, ["ann", "bob"]]
    assert beats == [True, False, [True, True]]
    assert went_offline == [False, True, False]
    assert abs(datetime.now(timezone.utc) - seen) < timedelta(seconds=30)
    assert presence.online_count() == 0


def test_sync_and_async_callers_see_one_presence(presence):
    asyncio.run(presence.aconnect("ann", "tab"))
    assert presence.connect("ann", "phone") is False
    assert presence.disconnect("ann", "tab") is False
    assert asyncio.run(presence.adisconnect("ann", "phone")) is True
    assert asyncio.run(presence.alast_seen("nobody")) is None


def test_asweep_drops_expired_users_and_tells_the_listeners_once(presence, clock):
    heard = []
    presence.on_offline(heard.append)
    presence.connect("gone", "tab", ttl=0.3)
    asyncio.run(presence.aconnect("stays", "tab", ttl=60))
    clock.advance(0.5)
    assert asyncio.run(presence.asweep()) == ["gone"]
    assert heard == ["gone"]
    assert asyncio.run(presence.aonline_users()) == ["stays"]


def test_async_forms_keep_the_connection_cap_and_refuse_bad_ids(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url, "REDIS_PRESENCE_MAX_CONNECTIONS": 2})

    async def third_tab():
        await ext.presence.aconnect("ann", "a")
        await ext.presence.aconnect("ann", "b")
        await ext.presence.aconnect("ann", "c")

    with app.app_context():
        with pytest.raises(TooManyConnections, match="PRESENCE_MAX_CONNECTIONS"):
            asyncio.run(third_tab())
        with pytest.raises(ValueError, match="user_id must be"):
            asyncio.run(ext.presence.aonline_many(["ok", ""]))
        with pytest.raises(ValueError, match="limit must be"):
            asyncio.run(ext.presence.aonline_users(limit=0))


class AsyncCaller:
    """The sync methods the model calls, each answered by its async form
    (``connect`` by ``aconnect`` ...) in one event loop."""

    def __init__(self, presence, loop):
        self._presence, self._loop = presence, loop

    def on_offline(self, listener):
        self._presence.on_offline(listener)

    def __getattr__(self, name):
        form = getattr(self._presence, f"a{name}")
        return lambda *args, **kwargs: self._loop.run_until_complete(form(*args, **kwargs))


def test_the_async_forms_agree_with_the_model_when_every_script_reply_is_lost_once(
        make_app, monkeypatch):
    """The model of test_presence_model, every call made by an async form,
    every script step run twice as a retry after a lost reply would."""
    lose_every_script_reply_once(monkeypatch)
    loop = asyncio.new_event_loop()

    def new_presence(model_clock: Clock):
        app, ext = make_app({"REDIS_URL": "memory://presence-async-model",
                             "REDIS_KEY_PREFIX": f"m{id(model_clock)}:",
                             "REDIS_PRESENCE_SHARDS": 2, "REDIS_PRESENCE_MAX_CONNECTIONS": CAP})
        monkeypatch.setattr(store, "_now_ms", model_clock)
        with app.app_context():
            return AsyncCaller(ext.presence, loop)

    try:
        run_state_machine_as_test(
            presence_machine(new_presence),
            settings=settings(max_examples=20, stateful_step_count=30, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow]))
    finally:
        loop.close()


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["standalone", "cluster"])
def test_concurrent_async_callers_on_a_real_server(mode_app):
    """Thirty users open and close at once through the async forms: each
    comes online and goes offline exactly once, on one server and on a
    Cluster (users spread over its masters' shards)."""
    app, ext = mode_app()
    users = [f"user-{n}" for n in range(30)]

    async def crowd():
        # One call first: redis-py's asyncio cluster client with a socket
        # timeout breaks connections when its first calls come at once.
        assert await presence.aonline_count() == 0
        opened = await asyncio.gather(*[presence.aconnect(user, "tab") for user in users])
        asked = (await presence.aonline_count(), await presence.aonline_many(users),
                 len(await presence.aonline_users(limit=100)),
                 await presence.aheartbeat_many([(user, "tab") for user in users]))
        closed = await asyncio.gather(*[presence.adisconnect(user, "tab") for user in users])
        return opened, asked, closed, await presence.aonline_count(), await presence.asweep()

    with app.app_context():
        presence = ext.presence
        opened, asked, closed, left, swept = asyncio.run(crowd())
    assert opened == [True] * 30
    assert asked == (30, dict.fromkeys(users, True), 30, [True] * 30)
    assert closed == [True] * 30
    assert (left, swept) == (0, [])


@pytest.mark.integration
def test_an_async_close_whose_reply_is_lost_still_reports_the_user_offline(
        lossy_presence):
    proxy, presence, _ = lossy_presence
    asyncio.run(presence.aconnect("ann", "tab"))
    proxy.lose_reply_to(CLOSE.sha)
    assert asyncio.run(presence.adisconnect("ann", "tab")) is True  # not "already offline"
    assert proxy.replies_lost == 1
    assert not presence.is_online("ann")


@pytest.mark.integration
def test_an_async_sweep_whose_reply_is_lost_announces_each_user_once(
        lossy_presence, clock):
    proxy, presence, heard = lossy_presence
    asyncio.run(presence.aconnect("gone", "tab", ttl=0.3))
    clock.advance(0.5)
    proxy.lose_reply_to(SWEEP.sha)
    assert asyncio.run(presence.asweep()) == ["gone"]
    assert proxy.replies_lost == 1
    assert heard.count("gone") == 1
