"""A watch on one master through its sentinels, shared by every pool of one
registration.

A thread of its own runs an event loop that keeps a subscription open on
every sentinel (to the announcements of :mod:`.announcements`) and PINGs it
every half second: a PING answered on a subscription proves that every
announcement made before it has arrived. What the sentinels say becomes a
:class:`~.view.MasterView`; the pools ask it, without I/O, whether a
connection may be handed out, and wait (bounded) when it may not.

When the view is not confirmed (no subscription answers, or none yet), a
lookup asks every sentinel at once, on a connection of its own, and the first
usable answer wins: a lookup ends by the deadline of the connect attempt
that asked for it, whatever the sentinels do, and tells refused credentials
from silence by then."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from redis.asyncio.connection import Connection as AsyncConnection
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.sentinel import MasterNotFoundError

from ...errors import describe_error
from ..events import ConnectionEvents, EventKind
from ..retry import LinearBackoff
from .announcements import (
    ABORTED,
    CHANNELS,
    Address,
    Announcement,
    Kind,
    MasterAnswer,
    read_announcement,
)
from .links import SentinelLinks
from .threads import EventRelay, LoopThread, task_of
from .view import MasterView

#: How often each subscription is PINGed.
PING_SECONDS = 0.5
#: Delays before a lost subscription is opened again: min(n x 0.1 s, 2 s).
RELINK_BACKOFF = LinearBackoff(step=0.1, cap=2.0)
#: A lookup ends this much before the deadline of the attempt that asked for
#: it (or a tenth of the attempt, if shorter), so that its verdict reaches
#: the attempt in time.
VERDICT_MARGIN_SECONDS = 0.05
#: How long close() waits for the watch's threads to end.
STOP_SECONDS = 1.0


class MoveListener(Protocol):
    """Told, in the watch's thread, when the master moves; must not block."""

    def master_moved(self, old: Address | None, new: Address) -> None: ...


class MasterWatch:
    """Follows master ``master`` through ``sentinels``, reached with
    ``options`` (credentials, and ``ssl`` with the TLS files and options);
    ``connect_timeout`` seconds bound every step. Its events go to
    ``events`` (held weakly)."""

    def __init__(self, master: str, sentinels: Sequence[Address], options: Mapping[str, Any],
                 connect_timeout: float, events: ConnectionEvents) -> None:
        self.master = master
        self.sentinels = tuple(sentinels)
        self.connect_timeout = connect_timeout
        self._links = SentinelLinks(options, connect_timeout)
        self._relay = EventRelay(events, f"flask-core-redis sentinel events of {self._about}")
        self._view = MasterView()
        self._changed = threading.Condition()
        self._loop_thread: LoopThread | None = None
        self._looking = False
        self._lookups_ended = 0
        self._failure: RedisError | None = None
        self._latest_epoch = -1
        self._linked: set[Address] = set()
        self._listeners: weakref.WeakSet[MoveListener] = weakref.WeakSet()
        _watches.add(self)

    def __repr__(self) -> str:
        return f"<MasterWatch {self._about}>"

    @property
    def _about(self) -> str:
        """Which master, through which sentinels: in reprs and thread names."""
        where = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"{self.master!r} via {where}"

    # What pools ask -----------------------------------------------------------

    def vouches_for(self, address: Address | None) -> bool:
        """Whether a connection to ``address`` may be handed out now: the
        sentinels confirmed it as the master within the last two seconds
        and no failover of it is under way. No I/O, no lock."""
        return self._view.vouches_for(address, time.monotonic())

    @property
    def address(self) -> Address | None:
        """The master's address as last heard (confirmed or not)."""
        return self._view.address

    def master_address(self, timeout: float | None = None) -> Address:
        """The master's address once confirmed, waiting at most ``timeout``
        seconds (default: the connect timeout) for the sentinels to confirm
        it or for a failover under way to end. Raises AuthenticationError
        when the sentinels refuse the credentials, else MasterNotFoundError
        that says what each sentinel did."""
        timeout = self.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._changed:
            lookups_before = self._lookups_ended
            while True:
                now, view = time.monotonic(), self._view
                if view.usable(now):
                    return view.address  # type: ignore[return-value]
                paused = view.paused_until > now
                if not paused and self._lookups_ended > lookups_before and self._failure:
                    raise _fresh(self._failure)
                if now >= deadline:
                    raise MasterNotFoundError(
                        f"No master found for {self.master!r}: not confirmed by the sentinels "
                        f"within {timeout * 1000:.0f} ms"
                        + (" (a failover is under way)" if paused else ""))
                loop_thread = self._running()
                if not paused and not self._looking:
                    self._looking = True
                    ends = deadline - min(VERDICT_MARGIN_SECONDS, timeout / 10)
                    loop_thread.call(functools.partial(self._look_up, ends))
                wake = view.paused_until if paused else deadline
                self._changed.wait(max(min(deadline, wake) - now, 0.001))

    def on_move(self, listener: MoveListener) -> None:
        """Tell ``listener`` when the master moves. Held weakly."""
        self._listeners.add(listener)

    def close(self, wait: bool = True) -> None:
        """Stop following: close every sentinel connection and end the
        threads, waiting for them (``wait``) at most a second in all. The
        next use starts again."""
        with self._changed:
            loop_thread, self._loop_thread = self._loop_thread, None
            self._looking = False
            self._changed.notify_all()
        started = time.monotonic()
        if loop_thread is not None:
            loop_thread.stop(STOP_SECONDS if wait else None)
        self._relay.stop(max(0.0, started + STOP_SECONDS - time.monotonic()) if wait else 0.0)

    # The thread and its loop ----------------------------------------------------

    def _running(self) -> LoopThread:
        """This process's loop thread, started if need be (with the lock)."""
        if self._loop_thread is None:
            self._relay.open()
            loop_thread = LoopThread(f"flask-core-redis sentinel watch of {self._about}")
            loop_thread.call(functools.partial(self._follow_all, loop_thread))
            self._loop_thread = loop_thread
        return self._loop_thread

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent's threads are not here, its lock may
        be held, and its sockets are shared with it. Let go of them, and
        start afresh on next use, from the master the parent knew, but not
        confirmed: the child has heard nothing the sentinels said since."""
        if self._loop_thread is not None:
            _left_by_fork.append(self._loop_thread)
        self._loop_thread = None
        self._links.let_go_after_fork()
        self._relay.forget()
        self._changed = threading.Condition()
        self._looking = False
        self._linked = set()
        self._view = self._view.unconfirmed()

    async def _follow_all(self, loop_thread: LoopThread) -> None:
        # return_exceptions: a cancelled gather would end at its first child's end
        await asyncio.gather(*(self._follow(sentinel, loop_thread)
                               for sentinel in self.sentinels), return_exceptions=True)

    async def _follow(self, sentinel: Address, loop_thread: LoopThread) -> None:
        """Keep a subscription to ``sentinel`` open until ``loop_thread``
        stops, opening it again after a failure with RELINK_BACKOFF's
        delays. Only changes are logged: a sentinel down for an hour is one
        line, not thousands."""
        failures = 0
        while True:
            try:
                await self._listen(sentinel)
            except Exception as error:  # a sentinel may answer anything
                if loop_thread.stopping:  # what failed is being closed
                    raise
                if sentinel in self._linked or failures == 0:
                    self._emit("sentinel", sentinel, "lost the subscription", error)
                    failures = 0
                self._linked.discard(sentinel)
                failures += 1
                await asyncio.sleep(RELINK_BACKOFF.compute(failures))

    async def _listen(self, sentinel: Address) -> None:
        """Subscribe, then ask where the master is (in that order, so that no
        announcement falls between), then hear announcements and PING until
        the connection fails."""
        connection = self._links.open(sentinel)
        try:
            await self._links.connect(connection)
            await connection.send_command("SUBSCRIBE", *CHANNELS)
            await connection.send_command("PSUBSCRIBE", ABORTED)
            confirmations = 0
            while confirmations < len(CHANNELS) + 1:
                reply = await self._read(connection, self.connect_timeout)
                confirmations += _confirms_a_subscription(reply)
                self._hear(reply)
            asked_at = time.monotonic()
            self._answered(await asyncio.wait_for(
                task_of(self._links.ask_master(sentinel, self.master)), self.connect_timeout),
                asked_at)
            self._emit("sentinel", sentinel, f"following master {self.master!r}")
            self._linked.add(sentinel)
            while True:
                await self._ping(connection)
        finally:
            await self._links.drop(connection)
    async def _ping(self, connection: AsyncConnection) -> None:
        """One PING, the announcements read until its answer (within the
        connect timeout), then the ones that come before the next is due."""
        sent_at = time.monotonic()
        await connection.send_command("PING")
        while not _is_pong(reply := await self._read(
                connection, sent_at + self.connect_timeout - time.monotonic())):
            self._hear(reply)
        self._update(lambda view: view.confirmed(sent_at))
        due = sent_at + PING_SECONDS
        while (left := due - time.monotonic()) > 0:
            reply = await connection.read_response(timeout=left)
            if reply is not None:
                self._hear(reply)

    async def _read(self, connection: AsyncConnection, timeout: float) -> Any:
        """The next reply, or a TimeoutError after ``timeout`` seconds."""
        reply = await connection.read_response(timeout=max(timeout, 0.001))
        if reply is None:
            raise asyncio.TimeoutError(f"no answer within {timeout * 1000:.0f} ms")
        return reply

    def _hear(self, reply: Any) -> None:
        """A message on a subscription: an announcement, or the confirmation
        of a (p)subscribe."""
        if not isinstance(reply, list) or reply[:1] not in (["message"], ["pmessage"]):
            return
        channel, data = reply[-2], reply[-1]
        announcement = read_announcement(channel, data)
        if announcement is not None:
            self._announced(announcement)

    def _announced(self, announcement: Announcement) -> None:
        if announcement.kind is Kind.NEW_EPOCH and announcement.epoch is not None:
            self._latest_epoch = max(self._latest_epoch, announcement.epoch)
            return
        now = time.monotonic()
        self._update(lambda view: view.announced(announcement, self.master, now,
                                                 self._latest_epoch))

    def _answered(self, answer: MasterAnswer, asked_at: float) -> None:
        self._latest_epoch = max(self._latest_epoch, answer.epoch)
        self._update(lambda view: view.answered(answer, asked_at))

    def _update(self, change: Callable[[MasterView], MasterView]) -> None:
        """Apply ``change`` to the view, wake whoever waits, and tell the
        listeners and the log of a move or of a failover starting or ending."""
        with self._changed:
            old = self._view
            new = self._view = change(old)
            self._changed.notify_all()
        if new.address != old.address and new.address is not None:
            self._moved(old.address, new.address)
        elif new.paused_until > old.paused_until:
            self._emit("failover", new.address, f"a failover of master {self.master!r} "
                       "started: connections wait for its outcome", outcome="started")
        elif new.paused_until < old.paused_until and new.paused_until <= time.monotonic():
            self._emit("failover", new.address, f"the failover of master {self.master!r} "
                       "ended without a promotion", outcome="ended")

    def _moved(self, old: Address | None, new: Address) -> None:
        if old is not None:
            self._emit("failover", new, f"master {self.master!r} moved here from "
                       f"{old[0]}:{old[1]}", outcome="moved")
        for listener in list(self._listeners):
            listener.master_moved(old, new)

    # Lookups ------------------------------------------------------------------

    async def _look_up(self, ends: float) -> None:
        """Ask every sentinel at once; the first answer that confirms a master
        ends it. By ``ends`` (monotonic seconds), always; whatever happens,
        the callers waiting for it hear that it ended."""
        failure: RedisError | None = MasterNotFoundError(
            f"No master found for {self.master!r}: the lookup was cut short")
        try:
            failure = await self._ask_every_sentinel(ends)
        finally:
            with self._changed:
                self._looking = False
                self._failure = failure
                self._lookups_ended += 1
                self._changed.notify_all()

    async def _ask_every_sentinel(self, ends: float) -> RedisError | None:
        """None once an answer confirms the master; else what went wrong."""
        asked_at = time.monotonic()
        asking = {task_of(self._links.ask_master(sentinel, self.master)): sentinel
                  for sentinel in self.sentinels}
        said: dict[Address, str] = {}
        refusals: list[AuthenticationError] = []
        answered = 0
        pending = set(asking)
        try:
            while pending:
                left = ends - time.monotonic()
                done, pending = await asyncio.wait(pending, timeout=max(0.0, left),
                                                   return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for task in done:
                    said[asking[task]], let_in = self._take(task, asked_at, refusals)
                    answered += let_in
                if self._view.usable(time.monotonic()):
                    return None
            for task in pending:
                said[asking[task]] = f"no answer within {(ends - asked_at) * 1000:.0f} ms"
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if refusals and not answered:
            return refusals[0]
        described = "; ".join(f"{host}:{port}: {what}" for (host, port), what in said.items())
        return MasterNotFoundError(f"No master found for {self.master!r}: {described}")

    def _take(self, task: asyncio.Future[MasterAnswer], asked_at: float,
              refusals: list[AuthenticationError]) -> tuple[str, bool]:
        """What one sentinel did, in words, and whether it let us in (it
        answered, if only with an error). An answer is applied to the view;
        refused credentials are kept in ``refusals``."""
        error = task.exception()
        if error is None:
            answer = task.result()
            self._answered(answer, asked_at)
            if answer.failing_over:
                return "is failing the master over", True
            if not answer.usable:
                return "holds the master down", True
            if answer.address == self._view.address:
                return "names it, but a failover of it is under way", True
            return (f"names {answer.address[0]}:{answer.address[1]} from an older "
                    f"configuration (epoch {answer.epoch})"), True
        if isinstance(error, AuthenticationError):
            refusals.append(error)
        return describe_error(error), isinstance(error, ResponseError)

    def _emit(self, kind: EventKind, address: Address | None, detail: str,
              error: BaseException | None = None, outcome: str | None = None) -> None:
        where = "" if address is None else f"{address[0]}:{address[1]}"
        self._relay.emit(kind, address=f"sentinel {where}" if kind == "sentinel" else where,
                         detail=detail, error=error, outcome=outcome)


def _is_pong(reply: Any) -> bool:
    return isinstance(reply, list) and reply[:1] == ["pong"]


def _confirms_a_subscription(reply: Any) -> bool:
    return isinstance(reply, list) and reply[:1] in (["subscribe"], ["psubscribe"])


def _fresh(error: RedisError) -> RedisError:
    """A new exception like ``error``: one object raised in several threads
    would share (and tangle) its traceback."""
    return type(error)(*error.args)


#: Every watch of the process, so that a forked child can start them afresh.
_watches: weakref.WeakSet[MasterWatch] = weakref.WeakSet()
#: What a child inherits of its parent's loop threads: kept, never run, and
#: never collected (that would warn, and close file descriptors by number
#: that the child may have reused).
_left_by_fork: list[LoopThread] = []


def _forget_threads_after_fork() -> None:
    for watch in list(_watches):
        watch._forget_after_fork()


os.register_at_fork(after_in_child=_forget_threads_after_fork)
