"""Presence against a model: random sequences of opens, heartbeats, closes,
sweeps and the passing of time (a fake clock: presence times come from the
app server's clock) must agree with a plain Python model of who is online,
and the announcements must never contradict it; also when the reply of
every script is lost once, and the call sent again."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from flask_core_redis.plugin_api import Command, Pipeline
from flask_core_redis.plugins.presence import TooManyConnections, store

USERS = st.sampled_from(["ann", "bob", "7", "ünï"])
CONNECTIONS = st.sampled_from(["~", "tab-1", "tab-2", "tab-3"])
TTLS = st.sampled_from([1, 5, 30])  # seconds
CAP = 3


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now_ms


def presence_machine(new_presence):
    class PresenceModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = Clock()
            self.presence = new_presence(self.clock)
            self.expiry: dict[str, dict[str, int]] = {}  # user -> connection -> ms
            self.announced: dict[str, list[bool]] = {}
            self.presence.on_offline(self.swept)

        def announce(self, user: str, online: bool) -> None:
            heard = self.announced.setdefault(user, [])
            assert (heard[-1] if heard else False) is not online, \
                f"{user} announced {'online' if online else 'offline'} twice in a row"
            heard.append(online)

        def swept(self, user: str) -> None:
            assert not self.live(user), f"swept {user}, who is online"
            self.expiry[user] = {}
            self.announce(user, False)

        def live(self, user: str) -> dict[str, int]:
            return {c: e for c, e in self.expiry.get(user, {}).items() if e > self.clock.now_ms}

        @rule(user=USERS, connection=CONNECTIONS, ttl=TTLS)
        def connect(self, user, connection, ttl):
            live = self.live(user)
            if connection not in live and len(live) >= CAP:
                with pytest.raises(TooManyConnections):
                    self.presence.connect(user, connection, ttl)
                return
            came_online = self.presence.connect(user, connection, ttl)
            assert came_online == (not live)
            if came_online:
                self.announce(user, True)
            self.expiry[user] = {**live, connection: self.clock.now_ms + ttl * 1000}

        @rule(user=USERS, connection=CONNECTIONS)
        def heartbeat(self, user, connection):
            # Renewals use the longest TTL, so the new expiry is the latest.
            alive = connection in self.live(user)
            if not alive and connection in self.expiry.get(user, {}):
                return  # timed out: renewed unless a sweep or an open dropped it
            assert self.presence.heartbeat(user, connection, 30) is alive
            if alive:
                self.expiry[user][connection] = self.clock.now_ms + 30_000

        @rule(user=USERS, connection=CONNECTIONS)
        def disconnect(self, user, connection):
            remaining = self.live(user)
            remaining.pop(connection, None)
            went_offline = self.presence.disconnect(user, connection)
            if remaining:
                assert not went_offline
            if went_offline:
                self.announce(user, False)
            self.expiry[user] = remaining

        @rule(user=USERS)
        def close_all(self, user):
            assert self.presence.mark_offline(user) is False
            self.expiry[user] = {}
            if self.announced.get(user, [False])[-1]:
                self.announce(user, False)  # as a caller tracking its users would

        @rule(seconds=st.sampled_from([0.5, 1, 2, 10, 40]))
        def time_passes(self, seconds):
            self.clock.now_ms += int(seconds * 1000)

        @rule()
        def sweep(self):
            self.presence.sweep()  # tells swept() of each user

        @invariant()
        def who_is_online_agrees(self):
            online = {user for user in self.expiry if self.live(user)}
            users = ["ann", "bob", "7", "ünï"]
            assert self.presence.online_many(users) == {u: u in online for u in users}
            assert self.presence.online_count() == len(online)
            assert set(self.presence.online_users(limit=10)) == online
            for user in online:
                assert self.announced.get(user, [False])[-1] is True, \
                    f"{user} is online but was last announced offline"

        def teardown(self) -> None:
            self.clock.now_ms += 3_600_000
            self.presence.sweep()
            assert self.presence.online_count() == 0
            late = [user for user, heard in self.announced.items() if heard[-1]]
            assert not late, f"went offline unannounced: {late}"

    return PresenceModel


@pytest.mark.parametrize("shards", [16, 1])
@pytest.mark.parametrize("mode", ["memory", pytest.param("standalone",
                                                          marks=pytest.mark.integration)])
def test_presence_agrees_with_a_model(mode, mode_app, monkeypatch, shards):
    run_against_the_model(mode_app, monkeypatch, shards,
                          examples=60 if mode == "memory" else 25)


def run_against_the_model(mode_app, monkeypatch, shards, examples):
    """The model's state machine, ``examples`` times, on a new app of
    ``mode_app`` with ``shards`` shards each time, on a clock of the model's."""

    def new_presence(clock):
        app, ext = mode_app({"REDIS_PRESENCE_SHARDS": shards,
                             "REDIS_PRESENCE_MAX_CONNECTIONS": CAP})
        monkeypatch.setattr(store, "_now_ms", clock)
        with app.app_context():
            return ext.presence

    run_state_machine_as_test(
        presence_machine(new_presence),
        settings=settings(max_examples=examples, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))


def is_script(step):
    """Whether ``step`` runs scripts only: an EVALSHA or EVAL, or a pipeline of them."""
    commands = step.commands if isinstance(step, Pipeline) else [step]
    return all(command.args[0] in ("EVALSHA", "EVAL") for command in commands)


def lose_every_script_reply_once(monkeypatch):
    """Each script step runs twice with the same keys and arguments, and the
    caller gets the second reply: what the retry policy does when the first
    reply is lost. Sync and async callers alike."""
    for kind in (Command, Pipeline):
        run_once, arun_once = kind.run, kind.arun

        def twice(step, client, run_once=run_once):
            if is_script(step):
                run_once(step, client)
            return run_once(step, client)

        async def atwice(step, client, arun_once=arun_once):
            if is_script(step):
                await arun_once(step, client)
            return await arun_once(step, client)

        monkeypatch.setattr(kind, "run", twice)
        monkeypatch.setattr(kind, "arun", atwice)


def test_presence_agrees_with_a_model_when_every_script_reply_is_lost_once(
        mode, mode_app, monkeypatch):
    lose_every_script_reply_once(monkeypatch)
    run_against_the_model(mode_app, monkeypatch, 1, examples=40 if mode == "memory" else 10)


@pytest.mark.parametrize("mode", ["memory", pytest.param("standalone",
                                                          marks=pytest.mark.integration)])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(users=st.lists(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
                              min_size=1, max_size=20), min_size=1, max_size=30, unique=True))
def test_each_user_comes_online_and_goes_offline_once_whatever_the_id(mode_app, monkeypatch,
                                                                       users):
    """Many calls in one second share the strings of records, whatever bytes
    the ids hold: each retry still gets its own call's reply."""
    with monkeypatch.context() as patch:
        lose_every_script_reply_once(patch)
        app, ext = mode_app({"REDIS_PRESENCE_SHARDS": 2})
        with app.app_context():
            assert [ext.presence.connect(user, "tab") for user in users] == [True] * len(users)
            assert [ext.presence.connect(user, "tab") for user in users] == [False] * len(users)
            assert [ext.presence.disconnect(user, "tab") for user in users] == [True] * len(users)
            assert ext.presence.online_count() == 0
