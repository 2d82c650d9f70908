"""Lua scripts for plugins: run by SHA, loaded on first use on each server
(and again after a failover or a SCRIPT FLUSH)."""

from __future__ import annotations

import hashlib
import math
import secrets
import sys
import time
from collections.abc import Mapping
from typing import Any, cast

from redis.exceptions import NoScriptError

from ..connection.operations import Command, Operation, Pipeline, run
from ..connection.retry import CAP_SECONDS as RETRY_DELAY_CAP_SECONDS

#: Each script's name, by SHA1: given to LuaScript, or found by script_name().
_NAMES: dict[str, str] = {}
#: The module that made each script given no name, by SHA1.
_MADE_IN: dict[str, str] = {}


class LuaScript:
    """One Lua script: EVALSHA, falling back to EVAL when the server lacks it.
    In Cluster every key of one call must be in one slot (use a hash tag).
    ``name`` is what tools that show the commands sent call it (the debug
    toolbar's Redis panel); without one, ``script_name()`` finds it."""

    def __init__(self, source: str, name: str | None = None) -> None:
        #: The script's Lua source.
        self.source = source
        #: Its SHA1, as EVALSHA and SCRIPT LOAD name it.
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        if name is not None:
            _NAMES[self.sha] = name
        else:
            _MADE_IN.setdefault(self.sha, sys._getframe(1).f_globals.get("__name__", ""))

    def __call__(self, client: Any, keys: list[str], args: list[Any],
                 **options: Any) -> Any:
        """Run it on the blocking ``client``; ``options`` go to redis-py's
        ``execute_command`` (``NEVER_DECODE=True`` for a reply in bytes, say).
        From async code: ``await arun(script.operation(keys, args), aclient)``."""
        return run(self.operation(keys, args, **options), client)

    def operation(self, keys: list[str], args: list[Any], **options: Any) -> Operation[Any]:
        """Running it, as an operation (:mod:`.operations`) for either client."""
        try:
            return (yield self.command(keys, args, **options))
        except NoScriptError:
            return (yield Command("EVAL", self.source, len(keys), *keys, *args, **options))

    def command(self, keys: list[str], args: list[Any], **options: Any) -> Command:
        """Its EVALSHA, to send in a pipeline."""
        return Command("EVALSHA", self.sha, len(keys), *keys, *args, **options)


def script_name(sha: str) -> str | None:
    """The name of the script whose SHA1 is ``sha``: the one given to
    :class:`LuaScript`, else ``module.CONSTANT`` where the module that made it
    holds it in a constant; None for a script of neither kind."""
    module = sys.modules.get(_MADE_IN.get(sha, "")) if sha not in _NAMES else None
    if module is not None:
        for constant, value in list(vars(module).items()):
            if isinstance(value, LuaScript) and value.sha == sha:
                _NAMES[sha] = f"{module.__name__}.{constant}"
                break
    return _NAMES.get(sha)


#: The shortest time a call's reply is remembered (see :func:`once_prelude`).
MIN_REPLAY_MS = 60_000
#: The length of a call's nonce, in bytes: random, so two calls of one second
#: on one hash tag share one with a chance of about 2**-64 per pair.
NONCE_BYTES = 8
#: The most common replies a script may declare: a record keeps the index in a byte.
MAX_COMMON_REPLIES = 255
#: The longest string of records: every call reads the whole string (on Redis
#: 7.0 about 1.3 us of server time per KB), so a common reply that finds it
#: full is kept under the call's own key instead.
MAX_RECORDS_BYTES = 8192

# A remembered common reply is a record: the call's nonce, then the reply's
# index in REPLIES, appended to the string of the calls of its second. Records
# have one length and nothing between them, so a nonce counts as found only
# where a record starts. The string lives for twice the replay window from its
# first record (one PEXPIRE per string, not per call), so a record appended
# later, by a caller whose clock is up to a window behind, lives for the window.
_ONCE = """
local REPLIES = {%(replies)s}
if #ARGV[2] ~= %(nonce)d then
  return redis.error_reply('once_call: ARGV[2] must be a nonce of %(nonce)d bytes')
end
local records = redis.call('GET', KEYS[2]) or ''
local function replayed()
  local at = string.find(records, ARGV[2], 1, true)
  while at and (at - 1) %% %(record)d ~= 0 do
    at = string.find(records, ARGV[2], at + 1, true)
  end
  if at then return REPLIES[string.byte(records, at + %(nonce)d)] end
  local stored = redis.call('GET', KEYS[1])
  if stored then return cjson.decode(stored) end
end
local replay = replayed()
if replay ~= nil then return replay end
local function same(a, b)
  if type(a) ~= 'table' or type(b) ~= 'table' then return a == b end
  for key, value in pairs(a) do
    if not same(value, b[key]) then return false end
  end
  for key in pairs(b) do
    if a[key] == nil then return false end
  end
  return true
end
local function remember(reply)
  for index, common in ipairs(REPLIES) do
    if same(reply, common) and #records + %(record)d <= %(max_records)d then
      if redis.call('APPEND', KEYS[2], ARGV[2] .. string.char(index)) == %(record)d then
        redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[1]))  -- the second's first record
      end
      return reply
    end
  end
  redis.call('SET', KEYS[1], cjson.encode(reply), 'PX', ARGV[1])
  return reply
end
"""


def once_prelude(*common_replies: str) -> str:
    """Lua prelude for a script that must take effect once per call, however
    often the core's retry policy sends it after a lost reply. The call's
    keys and arguments begin with those of :func:`once_call`. A run that
    changed something returns ``remember(reply)``; the same call sent again
    (the same keys and arguments) gets that reply back without running.

    ``common_replies`` are Lua expressions of the replies most runs remember
    (``"{0, 1, {}}"``, ``"1"``). One of them is remembered as a record of
    ``NONCE_BYTES`` + 1 bytes appended to the records of the calls of its
    second (KEYS[2]), while they take less than ``MAX_RECORDS_BYTES``; any
    other reply as JSON under the call's own key (KEYS[1]), about 100 bytes
    more. A reply counts as common when it equals one as a Lua value (tables
    compared field by field), so a replay returns exactly the first reply.
    Both are kept at least the replay window: the records, for twice the
    window from the second's first record, so long as the callers' clocks
    agree within the window."""
    if len(common_replies) > MAX_COMMON_REPLIES:
        raise ValueError(f"at most {MAX_COMMON_REPLIES} common replies, "
                         f"got {len(common_replies)}")
    return _ONCE % {"replies": ", ".join(common_replies), "nonce": NONCE_BYTES,
                    "record": NONCE_BYTES + 1, "max_records": MAX_RECORDS_BYTES}


def once_call(tag: str, window_ms: int, keys: list[str],
              args: list[Any]) -> tuple[list[str], list[Any]]:
    """The keys and arguments of one call of a :func:`once_prelude` script,
    ``keys`` and ``args`` after those it reads: KEYS[1] the call's own reply
    key, KEYS[2] the records of the calls of this second (of the caller's
    clock: a retry resends the same keys, so it finds its record whenever it
    arrives), both under hash tag ``tag`` (a Cluster runs a script on one
    slot); ARGV[1] ``window_ms``, how long to remember the reply
    (:func:`replay_window_ms`), ARGV[2] a random nonce."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return ([f"{tag}:reply:{nonce.hex()}", f"{tag}:replies:{int(time.time())}", *keys],
            [window_ms, nonce, *args])


def replay_window_ms(settings: Mapping[str, object]) -> int:
    """How long a call's reply must be remembered (see :func:`once_prelude`):
    longer than the core's retries of one command can take, and at least
    ``MIN_REPLAY_MS``.
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
    """Run several scripts in one pipeline on the blocking ``client``: one
    round trip, or on a Cluster one per master. A script a server lacks is
    sent again, alone, by EVAL. From async code:
    ``await arun(scripts_operation(calls), aclient)``."""
    return run(scripts_operation(calls, **options), client)


def scripts_operation(calls: list[tuple[LuaScript, list[str], list[Any]]],
                      **options: Any) -> Operation[list[Any]]:
    """:func:`run_scripts` as an operation (:mod:`.operations`)."""
    replies = yield Pipeline([script.command(keys, args, **options)
                              for script, keys, args in calls])
    results = []
    for (script, keys, args), reply in zip(calls, replies, strict=True):
        if isinstance(reply, NoScriptError):
            reply = yield from script.operation(keys, args, **options)
        elif isinstance(reply, Exception):
            raise reply
        results.append(reply)
    return results
