"""Who is online, per user and per connection (browser tab, socket, device).

A user is online while any of their connections is alive: marked online and
heartbeating within its TTL. Every change is one Lua script on keys that share
one hash tag, so it is atomic and Cluster-safe, and the clock is the server's.

Keys (under ``KEY_PREFIX``), all in the slot of ``{presence}``:

- ``online``: a sorted set, user -> the latest expiry of their connections
  (ms) while online; once offline, the time they were last active. It answers
  ``is_online``, ``online_count`` (one ZCOUNT) and ``last_seen``, and forgets
  users not seen for ``PRESENCE_SEEN_DAYS``.
- ``conns``: a hash, user -> ``<last active>|<connection>=<expiry>|...`` for
  users with live connections. One field per user, not one key, keeps the cost
  of an online user under 200 bytes. Each write also sweeps a few fields
  (HSCAN, cursor in ``sweep``), so a worker that crashed leaves nothing behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click
from flask import Flask
from redis.exceptions import RedisError

from ..config import Key, _integer
from ..hookspecs import hookimpl
from ..plugin_context import PluginContext
from ..scripts import NOW_MS, LuaScript

#: The connection of callers that name none (the original one-connection API);
#: short, because it is stored once per online user.
DEFAULT_CONNECTION = "~"
SEPARATORS = ("|", "=", "\0")

CONFIG_KEYS = (
    Key("PRESENCE_TTL", 60, _integer(1), "Presence: seconds a connection stays online "
        "without a heartbeat."),
    Key("PRESENCE_SEEN_DAYS", 30, _integer(1), "Presence: days `last_seen` is kept."),
)

# Lua helpers. parse: packed field -> last active, {connection = expiry}.
# pack: drops expired connections -> packed field (nil if none live), latest expiry.
_PACKING = """
local function parse(packed)
  local seen, conns = 0, {}
  if not packed then return seen, conns end
  for part in string.gmatch(packed, '[^|]+') do
    local eq = string.find(part, '=', 1, true)
    if eq then
      conns[string.sub(part, 1, eq - 1)] = tonumber(string.sub(part, eq + 1))
    else
      seen = tonumber(part)
    end
  end
  return seen, conns
end
local function pack(seen, conns)
  local parts, best = {string.format('%d', seen)}, 0
  for conn, expiry in pairs(conns) do
    if expiry > now then
      parts[#parts + 1] = conn .. '=' .. string.format('%d', expiry)
      if expiry > best then best = expiry end
    end
  end
  if best == 0 then return nil, 0 end
  return table.concat(parts, '|'), best
end
"""

# Files a user's connections (KEYS online, conns, sweep; ARGV[1] user, ARGV[2]
# how long offline users are remembered, ms), then sweeps and trims.
_STORE = """
local packed, best = pack(now, conns)
if packed then
  redis.call('HSET', KEYS[2], ARGV[1], packed)
  redis.call('ZADD', KEYS[1], best, ARGV[1])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
local cursor = redis.call('GET', KEYS[3]) or '0'
local page = redis.call('HSCAN', KEYS[2], cursor, 'COUNT', 10)
for i = 1, #page[2], 2 do
  local gone_seen, gone_conns = parse(page[2][i + 1])
  if not pack(gone_seen, gone_conns) then
    redis.call('HDEL', KEYS[2], page[2][i])
    redis.call('ZADD', KEYS[1], gone_seen, page[2][i])
  end
end
redis.call('SET', KEYS[3], page[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
"""

# ARGV[3] connection, ARGV[4] ttl ms. Returns {1 if this connection was alive,
# 1 if the user was online through any connection}.
_MARK_ONLINE = LuaScript(NOW_MS + _PACKING + """
local seen, conns = parse(redis.call('HGET', KEYS[2], ARGV[1]))
local before = conns[ARGV[3]] or 0
local user_was_online = 0
for _, expiry in pairs(conns) do
  if expiry > now then user_was_online = 1 end
end
conns[ARGV[3]] = now + tonumber(ARGV[4])
""" + _STORE + "return {before > now and 1 or 0, user_was_online}")

# ARGV[3] connection ('' = all). Returns the latest live expiry, 0 if offline.
_MARK_OFFLINE = LuaScript(NOW_MS + _PACKING + """
local seen, conns = parse(redis.call('HGET', KEYS[2], ARGV[1]))
if ARGV[3] == '' then conns = {} else conns[ARGV[3]] = nil end
""" + _STORE + "return best")

# KEYS online; ARGV[1] users joined by NUL (one argument, however many users:
# packing and parsing 10,000 separate values would cost more than the lookup).
# Returns a string of '1'/'0', one per user.
_ONLINE_MANY = LuaScript(NOW_MS + """
local users, start, text = {}, 1, ARGV[1]
while true do
  local stop = string.find(text, '\0', start, true)
  if not stop then users[#users + 1] = string.sub(text, start) break end
  users[#users + 1] = string.sub(text, start, stop - 1)
  start = stop + 1
end
local flags = {}
for first = 1, #users, 1000 do
  local last = math.min(first + 999, #users)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(users, first, last))
  for i = first, last do
    local score = scores[i - first + 1]
    flags[i] = (score and tonumber(score) > now) and '1' or '0'
  end
end
return table.concat(flags)
""")

# KEYS online. ARGV 'count' or 'list', offset, limit.
_ONLINE_QUERY = LuaScript(NOW_MS + """
if ARGV[1] == 'count' then
  return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
end
return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now,
                  'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[3]))
""")

# KEYS online, conns; ARGV user. Last active (ms), or false if never seen.
_LAST_SEEN = LuaScript(NOW_MS + _PACKING + """
local packed = redis.call('HGET', KEYS[2], ARGV[1])
if packed then return string.format('%d', (parse(packed))) end
return redis.call('ZSCORE', KEYS[1], ARGV[1])
""")


logger = logging.getLogger("flask_core_redis")


class _LocalConnections:
    """The Socket.IO connections this process serves: sid -> user."""

    def __init__(self) -> None:
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, sid: str, user: str) -> None:
        with self._lock:
            self._users[sid] = user

    def pop(self, sid: str) -> str | None:
        with self._lock:
            return self._users.pop(sid, None)

    def items(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._users.items())


def _identifier(name: str, value: object) -> str:
    text = str(value) if isinstance(value, str | int) else ""
    if not text or isinstance(value, bool) or any(sep in text for sep in "|=\0"):
        raise ValueError(f"{name} must be a non-empty str or int without '|', '=' or "
                         f"NUL, got {value!r}")
    return text


def _user(user_id: object) -> str:
    return _identifier("user_id", user_id)


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive whole number of seconds, got {value!r}")
    return value


class PresencePlugin:
    """``ext.presence``: mark users online and offline, ask who is online."""

    context: PluginContext

    @hookimpl
    def core_redis_setup(self, app: Flask, context: PluginContext) -> None:
        self.context = context
        self.default_ttl = context.setting(CONFIG_KEYS[0])
        self.seen_ms = context.setting(CONFIG_KEYS[1]) * 86_400_000
        tag = context.slot_tag("presence")
        self._keys = [f"{tag}:online", f"{tag}:conns", f"{tag}:sweep"]

    def mark_online(self, user_id: object, ttl: int | None = None, *,
                    connection_id: str = DEFAULT_CONNECTION) -> None:
        """Mark one connection of the user alive for ``ttl`` seconds."""
        self._touch(user_id, connection_id, ttl)

    def _connect(self, user: str, connection_id: str, ttl: int) -> bool:
        """Mark a connection online; True if the user was offline until now."""
        return not self._touch(user, connection_id, ttl)[1]

    def heartbeat(self, user_id: object, connection_id: str = DEFAULT_CONNECTION,
                  ttl: int | None = None) -> bool:
        """Keep a connection alive; False if it had already timed out (it is
        alive again now)."""
        return self._touch(user_id, connection_id, ttl)[0]

    def _touch(self, user_id: object, connection_id: str,
               ttl: int | None) -> tuple[bool, bool]:
        """One script: (this connection was alive, the user was online)."""
        user = _user(user_id)
        seconds = _positive("ttl", self.default_ttl if ttl is None else ttl)
        connection_alive, user_online = _MARK_ONLINE(
            self.context.client, self._keys,
            [user, self.seen_ms, _identifier("connection_id", connection_id),
             seconds * 1000])
        return bool(connection_alive), bool(user_online)

    def mark_offline(self, user_id: object, connection_id: str | None = None) -> bool:
        """Close one connection (or all of them); True if the user is still
        online through another connection."""
        user = _user(user_id)
        connection = "" if connection_id is None else _identifier("connection_id",
                                                                  connection_id)
        latest = _MARK_OFFLINE(self.context.client, self._keys,
                               [user, self.seen_ms, connection])
        return bool(latest)

    def is_online(self, user_id: object) -> bool:
        return self.online_many([user_id])[_user(user_id)]

    def online_many(self, user_ids: list[Any]) -> dict[str, bool]:
        """Online or not, for every user, in one round trip."""
        # The hot path of a bulk check: validate cheaply, in one pass over the
        # joined argument rather than per user.
        users = [user if type(user) is str and user else _user(user) for user in user_ids]
        if not users:
            return {}
        joined = "\0".join(users)
        if joined.count("\0") != len(users) - 1:
            raise ValueError("user ids must not contain NUL")
        flags = _ONLINE_MANY(self.context.client, self._keys[:1], [joined])
        if isinstance(flags, bytes):
            flags = flags.decode()
        return {user: flag == "1" for user, flag in zip(users, flags, strict=True)}

    def online_count(self) -> int:
        """How many users are online: one ZCOUNT, O(log N)."""
        return int(_ONLINE_QUERY(self.context.client, self._keys[:1], ["count", 0, 0]))

    def online_users(self, limit: int = 100, offset: int = 0) -> list[str]:
        """Online users, most recently active first."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0, got {limit}, {offset}")
        users = _ONLINE_QUERY(self.context.client, self._keys[:1], ["list", offset, limit])
        return [user.decode() if isinstance(user, bytes) else user for user in users]

    def last_seen(self, user_id: object) -> datetime | None:
        """When the user was last marked online, heartbeating or offline."""
        user = _user(user_id)
        score = _LAST_SEEN(self.context.client, self._keys[:2], [user])
        if score is None:
            return None
        return datetime.fromtimestamp(float(score) / 1000, tz=timezone.utc)

    def bind_socketio(self, socketio: Any, identify: Callable[[Any], object], *,
                      room: str = "presence", namespace: str = "/",
                      ttl: int | None = None, heartbeat_every: float | None = None) -> None:
        """Track Socket.IO connections as presence.

        On connect, ``identify(auth)`` (called in the Socket.IO request context,
        so ``flask.session`` works) names the user, or returns None to refuse
        the connection. The connection is marked online and joins ``room``;
        this process heartbeats its connections every ``heartbeat_every``
        seconds (default: a third of the TTL); on disconnect it is marked
        offline. Changes are broadcast to ``room`` as ``presence`` events,
        ``{"user": ..., "online": bool}``. A killed process stops heartbeating,
        so its users go offline after the TTL: no ghosts. Registers the
        namespace's ``connect`` and ``disconnect`` handlers."""
        from flask import request
        from flask_socketio import join_room

        seconds = _positive("ttl", self.default_ttl if ttl is None else ttl)
        every = heartbeat_every or max(seconds / 3, 0.1)
        local = _LocalConnections()

        def on_connect(auth: Any = None) -> bool:
            user_id = identify(auth)
            if user_id is None or user_id is False:
                return False
            user = _user(user_id)
            sid = request.sid  # type: ignore[attr-defined]
            came_online = self._connect(user, sid, seconds)  # one round trip
            local.add(sid, user)
            join_room(room)
            if came_online:
                socketio.emit("presence", {"user": user, "online": True}, to=room,
                              namespace=namespace)
            return True

        def on_disconnect(*_: Any) -> None:
            user = local.pop(request.sid)  # type: ignore[attr-defined]
            if user is not None and not self.mark_offline(
                    user, connection_id=request.sid):  # type: ignore[attr-defined]
                socketio.emit("presence", {"user": user, "online": False}, to=room,
                              namespace=namespace)

        def heartbeat_forever() -> None:
            while True:
                socketio.sleep(every)
                for sid, user in local.items():
                    try:
                        self.heartbeat(user, sid, seconds)
                    except RedisError as error:  # Redis down: try again next beat
                        logger.warning("presence heartbeat failed: %s", error)

        socketio.on_event("connect", on_connect, namespace=namespace)
        socketio.on_event("disconnect", on_disconnect, namespace=namespace)
        socketio.start_background_task(heartbeat_forever)

    @hookimpl
    def core_redis_health(self, context: PluginContext) -> dict[str, Any]:
        return {"online": self.online_count()}

    @hookimpl
    def core_redis_commands(self, context: PluginContext, group: click.Group) -> None:
        @group.group("presence")
        def presence() -> None:
            """Who is online."""

        @presence.command("count")
        def count() -> None:
            """Print how many users are online."""
            click.echo(str(self.online_count()))

        @presence.command("list")
        @click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
        @click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0))
        def list_users(limit: int, offset: int) -> None:
            """List online users, most recently active first."""
            for user in self.online_users(limit=limit, offset=offset):
                click.echo(user)
