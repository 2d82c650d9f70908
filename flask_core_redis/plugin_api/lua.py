"""Lua scripts for plugins: run by SHA, loaded on first use on each server
(and again after a failover or a SCRIPT FLUSH)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any, cast

from redis.exceptions import NoScriptError

from ..connection.retry import CAP_SECONDS as RETRY_DELAY_CAP_SECONDS


class LuaScript:
    """One Lua script: EVALSHA, falling back to EVAL when the server lacks it.
    In Cluster every key of one call must be in one slot (use a hash tag)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, client: Any, keys: list[str], args: list[Any],
                 **options: Any) -> Any:
        """Run it on ``client``; ``options`` go to redis-py's ``execute_command``
        (``NEVER_DECODE=True`` for a reply in bytes, say)."""
        try:
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args,
                                          **options)
        except NoScriptError:
            return client.execute_command("EVAL", self.source, len(keys), *keys, *args,
                                          **options)


#: The shortest time a call's reply is remembered (see ``ONCE``).
MIN_REPLAY_MS = 60_000

#: Lua prelude for a script that must take effect once per call, however often
#: the core's retry policy sends it after a lost reply. KEYS[1] is the call's
#: reply key (``<hash tag>:reply:<nonce>``, a nonce per call), ARGV[1] how long
#: to remember the reply (:func:`replay_window_ms`). A run that changed
#: something returns ``remember(reply)``; the same call sent again gets that
#: reply back without running.
ONCE = """
local remembered = redis.call('GET', KEYS[1])
if remembered then return cjson.decode(remembered) end
local function remember(reply)
  redis.call('SET', KEYS[1], cjson.encode(reply), 'PX', ARGV[1])
  return reply
end
"""


def replay_window_ms(settings: Mapping[str, object]) -> int:
    """How long a call's reply must be remembered (for ``ONCE``): longer than
    the core's retries of one command can take, and at least ``MIN_REPLAY_MS``.
    Counted, each attempt may wait for a connection, then for its reply, then
    for the retry delay; under a deadline, the last retry starts within the
    deadline and takes one attempt more. Without a socket timeout no reply is
    lost to one; a dropped connection is then given the connect timeout's
    length. ``settings`` is :attr:`PluginContext.settings`."""
    connect = cast(float, settings["connect_timeout_ms"])
    socket = cast("float | None", settings["socket_timeout_ms"])
    deadline = cast("float | None", settings.get("retry_deadline_ms"))
    each = connect + (connect if socket is None else socket) + RETRY_DELAY_CAP_SECONDS * 1000
    if deadline is None:
        retrying = (cast(int, settings["max_retries"]) + 1) * each
    else:
        retrying = deadline + each
    return max(MIN_REPLAY_MS, math.ceil(retrying))


#: Lua prelude: the server's clock in milliseconds, so every worker agrees.
NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""


def run_scripts(client: Any, calls: list[tuple[LuaScript, list[str], list[Any]]],
                **options: Any) -> list[Any]:
    """Run several scripts in one pipeline: one round trip, or on a Cluster one
    per master. A script a server lacks is sent again, alone, by EVAL."""
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **options)
    replies = pipe.execute(raise_on_error=False)
    results = []
    for (script, keys, args), reply in zip(calls, replies, strict=True):
        if isinstance(reply, NoScriptError):
            reply = script(client, keys, args, **options)
        elif isinstance(reply, Exception):
            raise reply
        results.append(reply)
    return results
