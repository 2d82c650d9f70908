"""The asyncio clients of one registration: by home loop, then by kind.

Where a client lives (its *home*, :mod:`flask_core_redis.connection.loops`):

- on a loop the app serves on for its whole life, when one is declared
  (Quart's serving loop: ``before_serving`` declares it, ``after_serving``
  closes its clients): calls from that loop run directly;
- anywhere else (Flask's ``async def`` views, each in a loop of its own under
  a WSGI server; Flask under ``WsgiToAsgi``; a script's ``asyncio.run``), on
  the process's one loop thread for asyncio clients: calls are handed to it,
  so connections are pooled across requests whatever loop each runs in, and
  no loop that ends takes a connection with it.

A forked child starts afresh: its parent's loops and clients are not its own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from ..connection.loops import LoopThread, at_home, running_loop
from ..errors import describe_error

logger = logging.getLogger("flask_core_redis")

#: How long a blocking close waits for the clients of one loop to close.
CLOSE_SECONDS = 5.0

_own_loop: LoopThread | None = None
_own_loop_pid = 0
_own_loop_lock = threading.Lock()
#: In a forked child, the parent's loops and clients, kept for the child's
#: life and never closed or collected: their selector (epoll) is the one the
#: parent's loops still use, and closing a transport or a loop here would
#: take the parent's sockets out of it (its next command would wait for ever).
_left_by_fork: list[Any] = []


def own_loop() -> asyncio.AbstractEventLoop:
    """The process's loop thread for asyncio clients, started on first use
    (again in a forked child)."""
    global _own_loop, _own_loop_pid
    if _own_loop is None or _own_loop_pid != os.getpid():
        with _own_loop_lock:
            if _own_loop is None or _own_loop_pid != os.getpid():
                _left_by_fork.append(_own_loop)
                _own_loop = LoopThread("flask-core-redis asyncio clients")
                _own_loop_pid = os.getpid()
    return _own_loop.loop


class AsyncClients:
    """One registration's asyncio clients, built by ``build(kind, changes,
    home)`` on first use on each home."""

    def __init__(self, build: Callable[[dict[str, Any], asyncio.AbstractEventLoop], Any],
                 ) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._homes: dict[asyncio.AbstractEventLoop, dict[str, Any]] = {}
        self._serving: set[asyncio.AbstractEventLoop] = set()
        self._pid = os.getpid()

    def get(self, kind: str, **changes: Any) -> Any:
        """The client of ``kind`` (built with the registration's settings and
        ``changes``) for the running loop."""
        home = self._home()
        client = self._homes.get(home, {}).get(kind)  # the hot path takes no lock
        if client is None:
            with self._lock:
                clients = self._homes.setdefault(home, {})
                client = clients.get(kind)
                if client is None:
                    client = clients[kind] = self._build(changes, home)
        return client

    def built(self) -> list[tuple[str, Any]]:
        """Every client built and not closed, with its kind, on every home."""
        with self._lock:
            return [item for clients in self._homes.values() for item in clients.items()]

    def _home(self) -> asyncio.AbstractEventLoop:
        if self._pid != os.getpid():  # a forked child: see _left_by_fork
            _left_by_fork.append(self._homes)
            self._homes, self._serving, self._pid = {}, set(), os.getpid()
        loop = running_loop()
        if loop is not None and loop in self._serving:
            return loop
        return own_loop()

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Home the clients asked for from ``loop`` on it, from now until
        :meth:`stop_serving`, which must run on it before it closes (Quart's
        ``after_serving`` does): a loop that closes first takes its clients'
        connections with it, unclosed. Loops closed since are forgotten."""
        with self._lock:
            for closed in [home for home in self._homes if home.is_closed()]:
                del self._homes[closed]
            self._serving = {home for home in self._serving if not home.is_closed()}
            self._serving.add(loop)

    async def stop_serving(self) -> None:
        """Close the clients homed on the running loop, and home none there
        any more."""
        loop = asyncio.get_running_loop()
        self._serving.discard(loop)
        with self._lock:
            clients = self._homes.pop(loop, {})
        await _close_all(clients)

    async def aclose(self) -> None:
        """Close every client, each on its home."""
        for home, clients in self._take_all():
            if not home.is_closed():
                await at_home(home, _close_all, clients)

    def close(self) -> None:
        """Close every client, each on its home; from a thread other than a
        home's, waiting up to ``CLOSE_SECONDS`` for it. A home that is the
        running loop gets the closing as a task of its own."""
        running = running_loop()
        for home, clients in self._take_all():
            if home.is_closed():
                continue
            if home is running:
                home.create_task(_close_all(clients))
                continue
            future = asyncio.run_coroutine_threadsafe(_close_all(clients), home)
            try:
                future.result(CLOSE_SECONDS)
            except (concurrent.futures.TimeoutError, RuntimeError):
                future.cancel()

    def _take_all(self) -> list[tuple[asyncio.AbstractEventLoop, dict[str, Any]]]:
        with self._lock:
            homes, self._homes = self._homes, {}
        if self._pid != os.getpid():  # the parent's: see _left_by_fork
            _left_by_fork.append(homes)
            return []
        return list(homes.items())


async def _close_all(clients: dict[str, Any]) -> None:
    for client in clients.values():
        try:
            await client.aclose()
        except Exception as error:  # closing one must not keep the others open
            logger.warning("closing an asyncio client failed: %s", describe_error(error))
