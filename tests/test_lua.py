"""Scripts run once per call (``once_prelude``, ``once_call``): a call sent
again after a lost reply gets the first run's reply and changes nothing, and
a call never gets another call's reply, whatever bytes the nonces hold."""

import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_core_redis.plugin_api import LuaScript, lua, once_call, once_prelude

WINDOW_MS = 600_000
COMMON = {"a": "a", "b": "b", "list": [1, []]}  # ARGV[3] -> the reply it asks for

# Counts its runs in KEYS[3]; replies with ARGV[3], or {1, {}} for 'list'.
# 'a', 'b' and the list are common replies (records), anything else is not.
COUNTED = LuaScript(once_prelude("'a'", "'b'", "{1, {}}") + """
redis.call('INCR', KEYS[3])
if ARGV[3] == 'list' then return remember({1, {}}) end
return remember(ARGV[3])
""")


class Calls:
    """Calls of COUNTED under one hash tag, with chosen nonces, all in one second:
    the records of every call share one string."""

    def __init__(self, client) -> None:
        self.client = client
        self.tag = "{once-" + uuid.uuid4().hex[:8] + "}"
        self.runs = f"{self.tag}:runs"

    def call(self, nonce: bytes, reply: str) -> tuple[list[str], list[object]]:
        """The keys and arguments once_call gives, with ``nonce`` and one second."""
        keys, args = once_call(self.tag, WINDOW_MS, [self.runs], [reply])
        keys[:2] = [f"{self.tag}:reply:{nonce.hex()}", f"{self.tag}:replies:1"]
        args[1] = nonce
        return keys, args

    def run(self, call: tuple[list[str], list[object]]) -> object:
        keys, args = call
        return COUNTED(self.client, keys, args)

    def count(self) -> int:
        return int(self.client.get(self.runs) or 0)


@pytest.fixture
def calls(mode_app):
    app, ext = mode_app()
    with app.app_context():
        yield lambda: Calls(ext.client)


def test_a_call_sent_again_gets_its_first_reply_and_runs_once(calls):
    once = calls()
    for reply in ("a", "list", "not common"):
        call = once.call(uuid.uuid4().bytes[:8], reply)
        first = once.run(call)
        assert once.run(call) == first == COMMON.get(reply, reply)
    assert once.count() == 3


def test_common_replies_are_records_and_others_keys_of_their_own(calls):
    once = calls()
    for n in range(20):
        once.run(once.call(n.to_bytes(8, "big"), "b"))
    once.run(once.call(b"uncommon", "c"))
    client = once.client
    assert client.strlen(f"{once.tag}:replies:1") == 20 * 9  # a nonce and a byte each
    assert client.get(f"{once.tag}:reply:{b'uncommon'.hex()}") == '"c"'
    # Kept for the window: the string of records for twice the window from its
    # first record, so that a record appended later lives for the window too.
    assert WINDOW_MS < client.pttl(f"{once.tag}:replies:1") <= 2 * WINDOW_MS
    assert WINDOW_MS // 2 < client.pttl(f"{once.tag}:reply:{b'uncommon'.hex()}") <= WINDOW_MS


def test_past_a_full_string_of_records_replies_get_keys_of_their_own(calls, monkeypatch):
    monkeypatch.setattr(lua, "MAX_RECORDS_BYTES", 5 * 9)
    small = LuaScript(once_prelude("'a'") + "redis.call('INCR', KEYS[3]) return remember('a')")
    once = calls()
    made = [once.call(n.to_bytes(8, "big"), "a") for n in range(8)]
    assert [small(once.client, *call) for call in made] == ["a"] * 8
    assert once.client.strlen(f"{once.tag}:replies:1") == 5 * 9
    assert len(list(once.client.scan_iter(match=f"{once.tag}:reply:*"))) == 3
    assert [small(once.client, *call) for call in made] == ["a"] * 8  # sent again
    assert once.count() == 8


def test_a_nonce_of_another_length_is_refused(calls):
    once = calls()
    for nonce in (b"", b"short", b"nine bytes"):
        keys, args = once.call(b"12345678", "a")
        args[1] = nonce
        with pytest.raises(redis.ResponseError, match="nonce of 8 bytes"):
            once.run((keys, args))
    assert once.count() == 0


def test_once_call_gives_a_fresh_nonce_and_keys_under_the_tag():
    first, second = once_call("{t}", 60_000, ["{t}:x"], ["y"]), once_call("{t}", 60_000, [], [])
    keys, args = first
    assert keys[2:] == ["{t}:x"] and args[0] == 60_000 and args[2:] == ["y"]
    assert all(key.startswith("{t}:") for key in keys)
    assert len(args[1]) == 8 and args[1] != second[1][1]
    assert keys[0] == f"{{t}}:reply:{args[1].hex()}"


# Nonces from a few bytes, NUL and the record bytes (1-3) among them, so that
# one often appears inside the records string across a record's boundary.
NONCES = st.one_of(st.binary(min_size=8, max_size=8),
                   st.lists(st.sampled_from(b"\x00\x01\x02\x03a"), min_size=8,
                            max_size=8).map(bytes))


@pytest.mark.parametrize("mode", ["memory", pytest.param("standalone",
                                                          marks=pytest.mark.integration)])
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), made=st.lists(st.tuples(NONCES, st.sampled_from(["a", "b", "list"])),
                                     min_size=1, max_size=12, unique_by=lambda made: made[0]))
def test_a_call_never_gets_another_calls_reply(calls, data, made):
    """Each call made runs once and gets its own reply back when sent again;
    any other nonce, such as bytes that straddle two records, is a new call."""
    once = calls()
    for nonce, reply in made:
        assert once.run(once.call(nonce, reply)) == COMMON[reply]
    records = b"".join(nonce + bytes([list(COMMON).index(reply) + 1])
                       for nonce, reply in made)
    straddling = [records[at:at + 8] for at in range(1, len(records) - 7) if at % 9]
    probes = data.draw(st.lists(st.one_of(NONCES, *(
        [st.sampled_from(straddling)] if straddling else [])), max_size=6, unique=True))
    probes = [probe for probe in probes if probe not in dict(made)]
    for probe in probes:
        assert once.run(once.call(probe, "not common")) == "not common"
    assert once.count() == len(made) + len(probes)
    for nonce, reply in made:
        assert once.run(once.call(nonce, reply)) == COMMON[reply]  # sent again
    assert once.count() == len(made) + len(probes)


def test_a_script_is_named_as_given_else_by_the_constant_that_holds_it():
    from flask_core_redis.plugins.cache import scripts as cache_scripts

    named = LuaScript(f"return '{uuid.uuid4().hex}'", name="greeting")
    made_here = LuaScript(f"return '{uuid.uuid4().hex}'")
    assert lua.script_name(named.sha) == "greeting"
    assert lua.script_name(COUNTED.sha) == f"{__name__}.COUNTED"
    assert (lua.script_name(cache_scripts.CLAIM.sha)
            == "flask_core_redis.plugins.cache.scripts.CLAIM")
    assert lua.script_name(made_here.sha) is None  # held by no module constant
    assert lua.script_name("0" * 40) is None
