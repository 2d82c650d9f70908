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

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click
from flask import Flask

from ...plugin_api import (
    MAX_TTL_SECONDS,
    Key,
    PluginContext,
    as_text,
    hookimpl,
    parsers,
    ttl_ms,
)
from .scripts import LAST_SEEN, MARK_OFFLINE, MARK_ONLINE, ONLINE_MANY, ONLINE_QUERY
from .socketio_binding import bind_socketio

#: The connection of callers that name none (the original one-connection API);
#: short, because it is stored once per online user.
DEFAULT_CONNECTION = "~"
#: What user and connection ids may not contain: the packed field's separators.
SEPARATORS = ("|", "=", "\0")

TTL = Key("PRESENCE_TTL", 60, parsers.integer(1, MAX_TTL_SECONDS), "Presence: seconds a "
          "connection stays online without a heartbeat.")
SEEN_DAYS = Key("PRESENCE_SEEN_DAYS", 30, parsers.integer(1, MAX_TTL_SECONDS // 86_400),
                "Presence: days `last_seen` is kept.")
CONFIG_KEYS = (TTL, SEEN_DAYS)


def _identifier(name: str, value: object) -> str:
    text = str(value) if isinstance(value, str | int) else ""
    if not text or isinstance(value, bool) or any(sep in text for sep in SEPARATORS):
        raise ValueError(f"{name} must be a non-empty str or int without '|', '=' or "
                         f"NUL, got {value!r}")
    return text


def _user(user_id: object) -> str:
    return _identifier("user_id", user_id)


class PresencePlugin:
    """``ext.presence``: mark users online and offline, ask who is online."""

    context: PluginContext

    @hookimpl
    def core_redis_setup(self, app: Flask, context: PluginContext) -> None:
        self.context = context
        self.default_ttl = context.setting(TTL)
        self.seen_ms = context.setting(SEEN_DAYS) * 86_400_000
        tag = context.slot_tag("presence")
        self._keys = [f"{tag}:online", f"{tag}:conns", f"{tag}:sweep"]

    def _ttl_ms(self, ttl: float | None) -> int:
        """``ttl`` seconds (default ``PRESENCE_TTL``) as milliseconds, validated."""
        return ttl_ms(self.default_ttl if ttl is None else ttl)

    def mark_online(self, user_id: object, ttl: float | None = None, *,
                    connection_id: str = DEFAULT_CONNECTION) -> None:
        """Mark one connection of the user alive for ``ttl`` seconds."""
        self._touch(user_id, connection_id, ttl)

    def connect(self, user_id: object, connection_id: str, ttl: float | None = None) -> bool:
        """Mark a connection online; True if the user was offline until now (one
        round trip: what a Socket.IO connect needs to decide on a broadcast)."""
        return not self._touch(user_id, connection_id, ttl)[1]

    def heartbeat(self, user_id: object, connection_id: str = DEFAULT_CONNECTION,
                  ttl: float | None = None) -> bool:
        """Keep a connection alive; False if it had already timed out (it is
        alive again now)."""
        return self._touch(user_id, connection_id, ttl)[0]

    def _touch(self, user_id: object, connection_id: str,
               ttl: float | None) -> tuple[bool, bool]:
        """One script: (this connection was alive, the user was online)."""
        user = _user(user_id)
        connection_alive, user_online = MARK_ONLINE(
            self.context.fail_fast_client(), self._keys,
            [user, self.seen_ms, _identifier("connection_id", connection_id),
             self._ttl_ms(ttl)])
        return bool(connection_alive), bool(user_online)

    def mark_offline(self, user_id: object, connection_id: str | None = None) -> bool:
        """Close one connection (or all of them); True if the user is still
        online through another connection."""
        user = _user(user_id)
        connection = "" if connection_id is None else _identifier("connection_id",
                                                                  connection_id)
        latest = MARK_OFFLINE(self.context.fail_fast_client(), self._keys,
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
        flags = as_text(ONLINE_MANY(self.context.fail_fast_client(), self._keys[:1], [joined]))
        return {user: flag == "1" for user, flag in zip(users, flags, strict=True)}

    def online_count(self) -> int:
        """How many users are online: one ZCOUNT, O(log N)."""
        return int(ONLINE_QUERY(self.context.fail_fast_client(), self._keys[:1], ["count", 0, 0]))

    def online_users(self, limit: int = 100, offset: int = 0) -> list[str]:
        """Online users, most recently active first."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0, got {limit}, {offset}")
        users = ONLINE_QUERY(self.context.fail_fast_client(), self._keys[:1],
                             ["list", offset, limit])
        return [as_text(user) for user in users]

    def last_seen(self, user_id: object) -> datetime | None:
        """When the user was last marked online, heartbeating or offline."""
        user = _user(user_id)
        score = LAST_SEEN(self.context.fail_fast_client(), self._keys[:2], [user])
        if score is None:
            return None
        return datetime.fromtimestamp(float(score) / 1000, tz=timezone.utc)

    def bind_socketio(self, socketio: Any, identify: Callable[[Any], object], *,
                      room: str = "presence", namespace: str = "/",
                      ttl: float | None = None,
                      heartbeat_every: float | None = None) -> None:
        """Track Socket.IO connections as presence; see
        :func:`~.socketio_binding.bind_socketio`."""
        bind_socketio(self, socketio, identify, ttl=self._ttl_ms(ttl) / 1000, room=room,
                      namespace=namespace, heartbeat_every=heartbeat_every)

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
