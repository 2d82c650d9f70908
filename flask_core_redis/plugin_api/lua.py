"""Lua scripts for plugins: run by SHA, loaded on first use on each server
(and again after a failover or a SCRIPT FLUSH)."""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError


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
