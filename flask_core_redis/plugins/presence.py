"""Who is online, per user and per connection (browser tab, socket, device).

A user is online while any of their connections is alive: marked online and
heartbeating within its TTL. Every change is one Lua script on keys that share
one hash tag, so it is atomic and Cluster-safe, and the clock is the server's.

Keys (under ``KEY_PREFIX``), all in the slot of ``{presence}``:
``online`` a sorted set user -> the latest expiry of their connections (ms);
``conn:<user>`` a hash connection -> expiry, which expires with its last
connection; ``seen`` a sorted set user -> last activity (ms), trimmed to
``PRESENCE_SEEN_DAYS``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click
from flask import Flask

from ..config import Key, _integer
from ..hookspecs import hookimpl
from ..plugin_context import PluginContext
from ..scripts import NOW_MS, LuaScript

DEFAULT_CONNECTION = "default"

CONFIG_KEYS = (
    Key("PRESENCE_TTL", 60, _integer(1), "Presence: seconds a connection stays online "
        "without a heartbeat."),
    Key("PRESENCE_SEEN_DAYS", 30, _integer(1), "Presence: days `last_seen` is kept."),
)

# Prunes expired connections of KEYS[2], sets `best` to the latest live expiry
# (0: none left) and files the user under it in KEYS[1]; records the activity
# in KEYS[3]. ARGV[1] user, ARGV[2] how long `seen` keeps entries (ms).
_REFILE = """
local best = 0
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local expiry = tonumber(fields[i + 1])
  if expiry <= now then
    redis.call('HDEL', KEYS[2], fields[i])
  elseif expiry > best then
    best = expiry
  end
end
if best > 0 then
  redis.call('ZADD', KEYS[1], best, ARGV[1])
  redis.call('PEXPIREAT', KEYS[2], best)
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[2]))
"""

# KEYS online, conn:<user>, seen; ARGV user, horizon, connection, ttl ms.
# Returns {1 if the connection was alive before, latest expiry}.
_MARK_ONLINE = LuaScript(NOW_MS + """
local before = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
redis.call('HSET', KEYS[2], ARGV[3], now + tonumber(ARGV[4]))
""" + _REFILE + "return {before > now and 1 or 0, best}")

# KEYS online, conn:<user>, seen; ARGV user, horizon, connection ('' = all).
_MARK_OFFLINE = LuaScript(NOW_MS + """
if ARGV[3] == '' then redis.call('DEL', KEYS[2]) else redis.call('HDEL', KEYS[2], ARGV[3]) end
""" + _REFILE + "return best")

# KEYS online; ARGV users. Returns 1/0 per user. ZMSCORE goes in batches:
# Lua's unpack() cannot spread more than a few thousand arguments.
_ONLINE_MANY = LuaScript(NOW_MS + """
local online = {}
for first = 1, #ARGV, 1000 do
  local last = math.min(first + 999, #ARGV)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV, first, last))
  for i = first, last do
    local score = scores[i - first + 1]
    online[i] = (score and tonumber(score) > now) and 1 or 0
  end
end
return online
""")

# KEYS online. ARGV 'count' or 'list', offset, limit.
_ONLINE_QUERY = LuaScript(NOW_MS + """
if ARGV[1] == 'count' then
  return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
end
return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now,
                  'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[3]))
""")


def _identifier(name: str, value: object) -> str:
    text = str(value) if isinstance(value, str | int) else ""
    if not text or isinstance(value, bool):
        raise ValueError(f"{name} must be a non-empty str or int, got {value!r}")
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
        self._online, self._seen = f"{tag}:online", f"{tag}:seen"
        self._conn_prefix = f"{tag}:conn:"

    def _keys(self, user: str) -> list[str]:
        return [self._online, self._conn_prefix + user, self._seen]

    def mark_online(self, user_id: object, ttl: int | None = None, *,
                    connection_id: str = DEFAULT_CONNECTION) -> None:
        """Mark one connection of the user alive for ``ttl`` seconds."""
        self._touch(user_id, connection_id, ttl)

    def heartbeat(self, user_id: object, connection_id: str = DEFAULT_CONNECTION,
                  ttl: int | None = None) -> bool:
        """Keep a connection alive; False if it had already timed out (it is
        alive again now)."""
        return self._touch(user_id, connection_id, ttl)

    def _touch(self, user_id: object, connection_id: str, ttl: int | None) -> bool:
        user = _user(user_id)
        seconds = _positive("ttl", self.default_ttl if ttl is None else ttl)
        was_alive, _ = _MARK_ONLINE(self.context.client, self._keys(user),
                                    [user, self.seen_ms,
                                     _identifier("connection_id", connection_id),
                                     seconds * 1000])
        return bool(was_alive)

    def mark_offline(self, user_id: object, connection_id: str | None = None) -> bool:
        """Close one connection (or all of them); True if the user is still
        online through another connection."""
        user = _user(user_id)
        connection = "" if connection_id is None else _identifier("connection_id",
                                                                  connection_id)
        latest = _MARK_OFFLINE(self.context.client, self._keys(user),
                               [user, self.seen_ms, connection])
        return bool(latest)

    def is_online(self, user_id: object) -> bool:
        return self.online_many([user_id])[_user(user_id)]

    def online_many(self, user_ids: list[Any]) -> dict[str, bool]:
        """Online or not, for every user, in one round trip."""
        users = [_user(user_id) for user_id in user_ids]
        if not users:
            return {}
        flags = _ONLINE_MANY(self.context.client, [self._online], users)
        return {user: bool(flag) for user, flag in zip(users, flags, strict=True)}

    def online_count(self) -> int:
        """How many users are online: one ZCOUNT, O(log N)."""
        return int(_ONLINE_QUERY(self.context.client, [self._online], ["count", 0, 0]))

    def online_users(self, limit: int = 100, offset: int = 0) -> list[str]:
        """Online users, most recently active first."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0, got {limit}, {offset}")
        users = _ONLINE_QUERY(self.context.client, [self._online], ["list", offset, limit])
        return [user.decode() if isinstance(user, bytes) else user for user in users]

    def last_seen(self, user_id: object) -> datetime | None:
        """When the user was last marked online, heartbeating or offline."""
        score = self.context.client.zscore(self._seen, _user(user_id))
        if score is None:
            return None
        return datetime.fromtimestamp(score / 1000, tz=timezone.utc)

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
