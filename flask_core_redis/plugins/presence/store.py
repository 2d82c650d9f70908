"""Who is online, per user and per connection (browser tab, socket, device).

A user is online while any of their connections is alive: opened, and
heartbeaten within its TTL. The data is split over hash-slot shards
(:mod:`.shards`); every change touches one shard, and costs the same however
many connections the user holds and however many users are online:

- a heartbeat is plain commands that only extend what exists (``ZADD XX``),
  so a heartbeat that races a close never reopens the connection;
- opening and closing are one script each (:mod:`.scripts`), run once per
  call, which also drop the user's expired connections;
- users whose every connection expired (their server died) are found by a
  sweep, which each open runs a little of and :meth:`PresencePlugin.sweep`
  runs in full; the users it drops are announced to ``on_offline`` listeners.

Times come from the app server's clock, so the app servers' clocks must agree
(NTP): a server whose clock runs ``s`` seconds ahead keeps its connections
``s`` seconds longer, and sees the others' expire ``s`` seconds early.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, TypeVar

import click
from flask import Flask

from ...plugin_api import (
    MAX_TTL_SECONDS,
    Command,
    Key,
    Operation,
    Pipeline,
    PluginContext,
    arun,
    as_text,
    hookimpl,
    once_call,
    parsers,
    replay_window_ms,
    run,
    scripts_operation,
    ttl_ms,
)
from .errors import TooManyConnections
from .scripts import CLOSE, DEFAULT_CONNECTION, ONLINE_MANY, OPEN, SWEEP
from .shards import Shard, Shards
from .socketio_binding import bind_socketio
from .telemetry import PresenceTelemetry

logger = logging.getLogger("flask_core_redis")

T = TypeVar("T")

#: The longest user or connection id accepted, in characters.
MAX_ID_LENGTH = 512
#: Ints from here on have more digits than an id may (and than str() takes).
_INT_ID_LIMIT = 10 ** MAX_ID_LENGTH
#: What the first step of a heartbeat found (see heartbeat_many).
_RENEWED, _RENEWED_AGAIN, _SOLO, _UNCHANGED = "renewed", "again", "solo", "unchanged"
#: How many expired users one open sweeps; one would keep up (every user that
#: expires was opened once), two catch up after a burst.
SWEEP_PER_OPEN = 2
#: How many expired users :meth:`PresencePlugin.sweep` drops per shard per call.
SWEEP_PER_CALL = 1000

TTL = Key("PRESENCE_TTL", 60, parsers.integer(1, MAX_TTL_SECONDS), "Presence: seconds a "
          "connection stays online without a heartbeat.")
SEEN_DAYS = Key("PRESENCE_SEEN_DAYS", 30, parsers.integer(1, MAX_TTL_SECONDS // 86_400),
                "Presence: days `last_seen` is kept.")
SHARDS = Key("PRESENCE_SHARDS", 16, parsers.integer(1, 256), "Presence: hash slots the "
             "data is split over, spread evenly over a Cluster's slot ranges; 1 keeps it "
             "in one slot.")
MAX_CONNECTIONS = Key("PRESENCE_MAX_CONNECTIONS", 100, parsers.integer(1, 100_000),
                      "Presence: live connections one user may hold; opening one more "
                      "raises `TooManyConnections`.")
#: The plugin's configuration keys (``REDIS_PRESENCE_TTL``...).
CONFIG_KEYS = (TTL, SEEN_DAYS, SHARDS, MAX_CONNECTIONS)


def _identifier(name: str, value: object) -> str:
    text = ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) < _INT_ID_LIMIT:
        text = str(value)
    if not text or "\0" in text or len(text) > MAX_ID_LENGTH:
        raise ValueError(f"{name} must be a non-empty str or int of at most "
                         f"{MAX_ID_LENGTH} characters, without NUL; got {_shown(value)}")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be valid Unicode (no lone surrogates); "
                         f"got {_shown(value)}") from None
    return text


def _shown(value: object) -> str:
    """``value`` for an error message: its repr, cut short."""
    if isinstance(value, int) and abs(value) >= _INT_ID_LIMIT:
        return f"an int of more than {MAX_ID_LENGTH} digits"
    return f"{value!r:.80}"


def _user(user_id: object) -> str:
    return _identifier("user_id", user_id)


def _replies(commands: list[Command]) -> Operation[list[Any]]:
    """The replies of ``commands``, sent in one pipeline (none if there are
    none); the first error reply is raised."""
    if not commands:
        return []
    replies = yield Pipeline(commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return list(replies)


def _now_ms() -> int:
    """Whole milliseconds: Redis stores and compares integer scores fastest,
    and Lua formats numbers to 14 digits, which a fraction would overflow."""
    return int(time.time() * 1000)


class PresencePlugin:
    """``ext.presence``: mark users online and offline, ask who is online."""

    #: This app's plugin context, set by :meth:`core_redis_setup`.
    context: PluginContext

    @hookimpl
    def core_redis_setup(self, app: Flask, context: PluginContext) -> None:
        """Read the ``PRESENCE_*`` keys."""
        self.context = context
        self.default_ttl, seen_days, shards, self.max_connections = (
            context.setting(key) for key in CONFIG_KEYS)
        self.seen_ms = seen_days * 86_400_000
        self._shards = Shards(context.slot_tag, "presence", shards)
        self._offline_listeners: list[Callable[[str], None]] = []
        self._replay_ms = replay_window_ms(context.settings)
        self._bindings_stop = threading.Event()
        self._telemetry = PresenceTelemetry(context)

    @hookimpl
    def core_redis_closing(self, context: PluginContext) -> None:
        """``ext.close()`` ends the heartbeat loops of ``bind_socketio``: this
        process's connections then expire, and other servers announce them."""
        self._bindings_stop.set()
        self._bindings_stop = threading.Event()  # for a later bind_socketio

    def _run(self, operation: Operation[T], span: str | None = None) -> T:
        """``operation`` with the blocking fail-fast client, in the span
        ``presence.<span>`` if one is named."""
        if span is not None:
            operation = self._telemetry.spans[span].traced(operation)
        return run(operation, self.context.fail_fast_client())

    async def _arun(self, operation: Operation[T], span: str | None = None) -> T:
        """``operation`` with the asyncio fail-fast client of the running loop,
        in the span ``presence.<span>`` if one is named."""
        if span is not None:
            operation = self._telemetry.spans[span].traced(operation)
        return await arun(operation, self.context.fail_fast_async_client())

    def _once(self, shard: Shard, keys: list[str],
              args: list[Any]) -> tuple[list[str], list[Any]]:
        """The keys and arguments of one call of a change (see :mod:`.scripts`)."""
        return once_call(shard.tag, self._replay_ms, keys, args)

    def _ttl_ms(self, ttl: float | None) -> int:
        """``ttl`` seconds (default ``PRESENCE_TTL``) as milliseconds, validated."""
        return ttl_ms(self.default_ttl if ttl is None else ttl)

    # Changes ----------------------------------------------------------------

    def mark_online(self, user_id: object, ttl: float | None = None, *,
                    connection_id: str = DEFAULT_CONNECTION) -> None:
        """Open (or renew) one connection of the user for ``ttl`` seconds."""
        self._run(self._open_op(user_id, connection_id, ttl), "open")

    async def amark_online(self, user_id: object, ttl: float | None = None, *,
                           connection_id: str = DEFAULT_CONNECTION) -> None:
        """:meth:`mark_online` from async code."""
        await self._arun(self._open_op(user_id, connection_id, ttl), "open")

    def connect(self, user_id: object, connection_id: str, ttl: float | None = None) -> bool:
        """Open a connection; True if the user was offline until now (one round
        trip: what a Socket.IO connect needs to decide on a broadcast)."""
        return self._run(self._connect_op(user_id, connection_id, ttl), "open")

    async def aconnect(self, user_id: object, connection_id: str,
                       ttl: float | None = None) -> bool:
        """:meth:`connect` from async code."""
        return await self._arun(self._connect_op(user_id, connection_id, ttl), "open")

    def _connect_op(self, user_id: object, connection_id: str,
                    ttl: float | None) -> Operation[bool]:
        _, online = yield from self._open_op(user_id, connection_id, ttl)
        return not online

    def _open_op(self, user_id: object, connection_id: str,
                 ttl: float | None) -> Operation[tuple[bool, bool]]:
        """One script: (this connection was alive, the user was online)."""
        user, connection = _user(user_id), _identifier("connection_id", connection_id)
        shard, now = self._shards.of(user), _now_ms()
        reply = yield from OPEN.operation(*self._once(
            shard, [shard.users, shard.present, shard.seen, shard.held(user)],
            [user, connection, now, now + self._ttl_ms(ttl), self.max_connections,
             shard.held_prefix, SWEEP_PER_OPEN, self.seen_ms]))
        note = self._telemetry.spans["open"].note
        if reply[0] == -1:
            self._telemetry.refused.add(1)
            note(refused=True)
            raise TooManyConnections(
                f"user {user!r:.80} already holds {self.max_connections} live connections "
                "(PRESENCE_MAX_CONNECTIONS); close one, or let it time out, first")
        alive, online, gone = reply
        self._telemetry.opens.add(1, came_online=not online)
        note(refused=False, came_online=not online)
        self._announce_offline(gone)
        return bool(alive), bool(online)

    def heartbeat(self, user_id: object, connection_id: str = DEFAULT_CONNECTION,
                  ttl: float | None = None) -> bool:
        """Renew an open connection for ``ttl`` more seconds; True if it was
        open. False if it is not (never opened, closed, or dropped by a sweep
        after it timed out): a heartbeat never opens a connection,
        :meth:`connect` does. One that timed out and is not dropped yet is
        renewed. See :meth:`heartbeat_many` for what it costs."""
        return self._run(self._heartbeat_many_op([(user_id, connection_id)], ttl))[0]

    async def aheartbeat(self, user_id: object, connection_id: str = DEFAULT_CONNECTION,
                         ttl: float | None = None) -> bool:
        """:meth:`heartbeat` from async code."""
        return (await self._arun(self._heartbeat_many_op([(user_id, connection_id)], ttl)))[0]

    def heartbeat_many(self, connections: Iterable[tuple[object, str]],
                       ttl: float | None = None) -> list[bool]:
        """:meth:`heartbeat` for each ``(user_id, connection_id)``, in two
        pipelines: two round trips (per master) however many.

        No script: first ``ZADD XX CH`` renews each connection that exists,
        then ``ZADD XX GT`` moves the user's mark for those renewed (for a user
        with only the default connection, the mark is the connection). So a
        heartbeat never reopens a closed connection. One that races the close
        of its connection while the user holds others may move the user's mark
        up to ``ttl`` past their last connection."""
        return self._run(self._heartbeat_many_op(connections, ttl))

    async def aheartbeat_many(self, connections: Iterable[tuple[object, str]],
                              ttl: float | None = None) -> list[bool]:
        """:meth:`heartbeat_many` from async code."""
        return await self._arun(self._heartbeat_many_op(connections, ttl))

    def _heartbeat_many_op(self, connections: Iterable[tuple[object, str]],
                           ttl: float | None) -> Operation[list[bool]]:
        beats = [(_user(user_id), _identifier("connection_id", connection_id))
                 for user_id, connection_id in connections]
        expiry = _now_ms() + self._ttl_ms(ttl)
        renew = []
        for user, connection in beats:
            held = self._shards.of(user).held(user)
            renew.append(Command("ZADD", held, "XX", "CH", expiry, connection))
            if connection == DEFAULT_CONNECTION:
                renew.append(Command("EXISTS", held))
        replies = iter((yield from _replies(renew)))
        # An unchanged score (a beat in the same millisecond as the last one)
        # also answers 0: those ask again whether the connection is there.
        mark: list[Command] = []
        kinds, marked = [], set()
        for user, connection in beats:
            shard = self._shards.of(user)
            renewed = next(replies) == 1
            if connection == DEFAULT_CONNECTION and next(replies) == 0 and not renewed:
                kinds.append(_SOLO)  # no `held`: the user's mark is this connection's
                mark += [Command("ZADD", shard.users, "XX", expiry, user),
                         Command("ZSCORE", shard.users, user)]
            elif renewed and user in marked:
                kinds.append(_RENEWED_AGAIN)  # the user's mark is moved once
            elif renewed:
                kinds.append(_RENEWED)
                mark.append(Command("ZADD", shard.users, "XX", "GT", expiry, user))
                marked.add(user)
            else:
                kinds.append(_UNCHANGED)
                mark.append(Command("ZSCORE", shard.held(user), connection))
        replies = iter((yield from _replies(mark)))
        answers = []
        for kind in kinds:
            if kind == _RENEWED_AGAIN:
                answers.append(True)
                continue
            reply = next(replies)  # renewed: the mark's ZADD; else a ZSCORE
            if kind == _SOLO:
                reply = next(replies)  # the ZSCORE after the mark's ZADD
            answers.append(kind == _RENEWED or reply is not None)
        return answers

    def mark_offline(self, user_id: object, connection_id: str | None = None) -> bool:
        """Close one connection (or all of them); True if the user is still
        online through another connection."""
        return self._run(self._close_op(user_id, connection_id), "close") == 1

    async def amark_offline(self, user_id: object, connection_id: str | None = None) -> bool:
        """:meth:`mark_offline` from async code."""
        return await self._arun(self._close_op(user_id, connection_id), "close") == 1

    def disconnect(self, user_id: object, connection_id: str) -> bool:
        """Close a connection; True if this made the user go offline (False if
        they are still online, or were already offline): what a Socket.IO
        disconnect needs to decide on a broadcast."""
        return self._run(self._close_op(user_id, connection_id), "close") == 0

    async def adisconnect(self, user_id: object, connection_id: str) -> bool:
        """:meth:`disconnect` from async code."""
        return await self._arun(self._close_op(user_id, connection_id), "close") == 0

    def _close_op(self, user_id: object, connection_id: str | None) -> Operation[int]:
        """One script: 1 if the user is still online, 0 if this made them
        offline, -1 if they were not online."""
        user = _user(user_id)
        connection = "" if connection_id is None else _identifier("connection_id",
                                                                  connection_id)
        shard = self._shards.of(user)
        still = int((yield from CLOSE.operation(*self._once(
            shard, [shard.users, shard.present, shard.seen, shard.held(user)],
            [user, connection, _now_ms()]))))
        if still >= 0:
            self._telemetry.closes.add(1, went_offline=still == 0)
            self._telemetry.spans["close"].note(went_offline=still == 0)
        if still == 0:
            self._telemetry.offline.add(1, reason="closed")
        return still

    # Users gone offline without a close ---------------------------------------

    def on_offline(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(user)`` for each user a sweep finds offline: their
        last connection expired (its server died, say) without a close. It is
        called in the caller of the change that finds them, in the event
        loop for an async caller: keep it short."""
        self._offline_listeners.append(listener)

    def sweep(self) -> list[str]:
        """Drop the users whose every connection has expired, on every shard (up
        to ``SWEEP_PER_CALL`` each, one round trip per master), tell the
        ``on_offline`` listeners, and return them."""
        return self._run(self._sweep_op(), "sweep")

    async def asweep(self) -> list[str]:
        """:meth:`sweep` from async code."""
        return await self._arun(self._sweep_op(), "sweep")

    def _sweep_op(self) -> Operation[list[str]]:
        now = _now_ms()
        replies = yield from scripts_operation([
            (SWEEP, *self._once(shard, [shard.users, shard.present, shard.seen],
                                [now, SWEEP_PER_CALL, self.seen_ms, shard.held_prefix]))
            for shard in self._shards.all])
        gone = [user for reply in replies for user in reply]
        self._telemetry.sweeps.add(1)
        self._telemetry.spans["sweep"].note(users=len(gone))
        self._announce_offline(gone)
        return [as_text(user) for user in gone]

    def _announce_offline(self, gone: list[Any]) -> None:
        """Tell every listener of every user; a listener that raises is logged,
        and the others are still told."""
        if gone:
            self._telemetry.offline.add(len(gone), reason="swept")
        for user in gone:
            for listener in self._offline_listeners:
                try:
                    listener(as_text(user))
                except Exception:
                    logger.exception("presence: an on_offline listener failed")

    # Questions --------------------------------------------------------------

    def is_online(self, user_id: object) -> bool:
        """Whether the user holds a connection that has not timed out."""
        return self._run(self._online_many_op([user_id]))[_user(user_id)]

    async def ais_online(self, user_id: object) -> bool:
        """:meth:`is_online` from async code."""
        return (await self._arun(self._online_many_op([user_id])))[_user(user_id)]

    def online_many(self, user_ids: list[Any]) -> dict[str, bool]:
        """Online or not, for every user: one script per shard, one round trip
        per master."""
        return self._run(self._online_many_op(user_ids))

    async def aonline_many(self, user_ids: list[Any]) -> dict[str, bool]:
        """:meth:`online_many` from async code."""
        return await self._arun(self._online_many_op(user_ids))

    def _online_many_op(self, user_ids: list[Any]) -> Operation[dict[str, bool]]:
        # The hot path of a bulk check: validate cheaply, in one pass over the
        # joined argument rather than per user.
        users = [user if type(user) is str and user and len(user) <= MAX_ID_LENGTH
                 else _user(user) for user in user_ids]
        if not users:
            return {}
        try:
            "".join(users).encode()
        except UnicodeEncodeError:
            for user in users:
                _user(user)  # raises, naming what is wrong
        groups = list(self._shards.group(users).items())
        now = _now_ms()
        calls = []
        for index, positions in groups:
            joined = "\0".join(users[position] for position in positions)
            if joined.count("\0") != len(positions) - 1:
                raise ValueError("user ids must not contain NUL")
            shard = self._shards.all[index]
            calls.append((ONLINE_MANY, [shard.users, shard.present], [joined, now]))
        flags = [False] * len(users)
        replies = yield from scripts_operation(calls)
        for (_, positions), reply in zip(groups, replies, strict=True):
            for position, flag in zip(positions, as_text(reply), strict=True):
                flags[position] = flag == "1"
        return dict(zip(users, flags, strict=True))

    def _per_shard_op(self, command: Callable[[Shard], Command]) -> Operation[list[Any]]:
        """``command(shard)`` for every shard in one pipeline: one round trip
        per master."""
        return (yield from _replies([command(shard) for shard in self._shards.all]))

    def online_count(self) -> int:
        """How many users are online: one ZCOUNT per shard, O(log N) each."""
        return self._run(self._online_count_op())

    async def aonline_count(self) -> int:
        """:meth:`online_count` from async code."""
        return await self._arun(self._online_count_op())

    def _online_count_op(self) -> Operation[int]:
        now = _now_ms()
        return sum((yield from self._per_shard_op(
            lambda shard: Command("ZCOUNT", shard.users, f"({now}", "+inf"))))

    def online_users(self, limit: int = 100, offset: int = 0) -> list[str]:
        """Online users, most recently active first (latest expiry first)."""
        return self._run(self._online_users_op(limit, offset))

    async def aonline_users(self, limit: int = 100, offset: int = 0) -> list[str]:
        """:meth:`online_users` from async code."""
        return await self._arun(self._online_users_op(limit, offset))

    def _online_users_op(self, limit: int, offset: int) -> Operation[list[str]]:
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0, got {limit}, {offset}")
        now = _now_ms()
        pages = yield from self._per_shard_op(lambda shard: Command(
            "ZREVRANGEBYSCORE", shard.users, "+inf", f"({now}", "LIMIT", 0, offset + limit,
            "WITHSCORES", withscores=True, score_cast_func=float))
        # Each page is in Redis' order, score then member descending: merge alike.
        merged = heapq.merge(*pages, key=lambda pair: (pair[1], as_text(pair[0])),
                             reverse=True)
        return [as_text(user) for user, _ in list(merged)[offset:offset + limit]]

    def last_seen(self, user_id: object) -> datetime | None:
        """Now for a user online; for one offline, when they went offline (their
        close, or the expiry of their last connection); None if not seen within
        ``PRESENCE_SEEN_DAYS``."""
        return self._run(self._last_seen_op(user_id))

    async def alast_seen(self, user_id: object) -> datetime | None:
        """:meth:`last_seen` from async code."""
        return await self._arun(self._last_seen_op(user_id))

    def _last_seen_op(self, user_id: object) -> Operation[datetime | None]:
        user = _user(user_id)
        shard, now = self._shards.of(user), _now_ms()
        mark, seen = yield from _replies([Command("ZSCORE", shard.users, user),
                                          Command("ZSCORE", shard.seen, user)])
        if mark is not None and mark > now:
            seen = now
        elif mark is not None:
            seen = max(mark, seen or 0)
        if seen is None:
            return None
        return datetime.fromtimestamp(float(seen) / 1000, tz=timezone.utc)

    # Integration ------------------------------------------------------------

    def bind_socketio(self, socketio: Any, identify: Callable[..., object], *,
                      room: str = "presence", namespace: str = "/",
                      ttl: float | None = None,
                      heartbeat_every: float | None = None,
                      announce_as: Callable[[str], object] = str) -> None:
        """Track the connections of a Flask-SocketIO server, or of
        python-socketio's ``AsyncServer``, as presence.

        On connect, ``identify`` names the user, or returns None to refuse
        the connection. For Flask-SocketIO it is ``identify(auth)``, called in
        the Socket.IO request context (so ``flask.session`` works). For an
        ``AsyncServer`` it is ``identify(environ, auth)``, given the
        handshake's WSGI-style ``environ`` (its cookies in
        ``environ["HTTP_COOKIE"]``), and may be a coroutine function. The
        connection is opened for ``ttl`` seconds (default: ``PRESENCE_TTL``)
        and joins ``room``; a user at ``PRESENCE_MAX_CONNECTIONS`` is refused.
        On disconnect it is closed. Every ``heartbeat_every`` seconds
        (default: a third of the TTL) this process heartbeats its connections
        and sweeps: users whose last connection expired (their server died)
        are announced offline by whichever process sweeps first. An
        ``AsyncServer``'s heartbeats are a task of the server, started by its
        first connection, and use the async forms. Changes are broadcast to
        ``room`` as ``presence`` events, ``{"user": announce_as(user), "online":
        bool}``: give ``announce_as`` when user ids are private (a phone
        number, an email), so the room sees what it may. Registers the
        namespace's ``connect`` and ``disconnect`` handlers; ``ext.close()``
        stops the heartbeats."""
        bind_socketio(self, socketio, identify, ttl=self._ttl_ms(ttl) / 1000, room=room,
                      namespace=namespace, heartbeat_every=heartbeat_every,
                      stop=self._bindings_stop, announce_as=announce_as)

    @hookimpl
    def core_redis_health(self, context: PluginContext) -> dict[str, Any]:
        """``{"online": n}``: how many users are online."""
        return {"online": self.online_count()}

    @hookimpl
    def core_redis_commands(self, context: PluginContext, group: click.Group) -> None:
        """``flask redis presence count``, ``list`` and ``sweep``."""

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

        @presence.command("sweep")
        def sweep() -> None:
            """Drop users whose every connection expired; print them."""
            for user in self.sweep():
                click.echo(user)
