"""``ext.health()`` of one registration, bounded in time: the connection
core's check in a thread of its own, plus each plugin's part."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..connection import AnyClient
from ..connection.health import acheck_health, check_health, failed_report
from ..plugin_api.manager import Plugins
from ..telemetry import ConnectionTelemetry

#: What health() may take beyond CONNECT_TIMEOUT.
HEALTH_MARGIN_SECONDS = 0.5


class HealthCheck:
    """The health check of one registration. ``own_client`` is the
    registration's :meth:`~.registry.RedisState.own_client`, ``async_client``
    its asyncio counterpart (a kind, and the settings' changes)."""

    def __init__(self, settings: Settings, plugins: Plugins,
                 own_client: Callable[..., AnyClient],
                 async_client: Callable[..., Any],
                 telemetry: ConnectionTelemetry | None = None) -> None:
        self._settings = settings
        self._telemetry = telemetry
        self._plugins = plugins
        self._own_client = own_client
        self._async_client = async_client
        self._running = threading.Lock()

    def run(self) -> dict[str, Any]:
        """The core report plus each plugin's part; ok only if all parts are
        (:meth:`_run`), recorded when telemetry is on."""
        started = time.monotonic()
        return self._recorded(self._run(), started)

    async def arun(self) -> dict[str, Any]:
        """:meth:`run` on the asyncio client of the running loop: the same
        report, within the same bound, the core's check on the loop and the
        plugins' parts (their hooks block) in a worker thread."""
        started = time.monotonic()
        return self._recorded(await self._arun(), started)

    def _recorded(self, report: dict[str, Any], started: float) -> dict[str, Any]:
        if self._telemetry is not None:
            self._telemetry.health_checked(bool(report["ok"]), time.monotonic() - started)
        return report

    def _run(self) -> dict[str, Any]:
        """The core report plus each plugin's part; ok only if all parts are.

        Bounded: it answers within ``CONNECT_TIMEOUT`` plus half a second,
        whatever the servers do. The check runs in a thread of its own (with
        the caller's app context); when it has not answered by then, the report
        says so with ``ok`` false, and until that check ends the next ones say
        it is still waiting, rather than piling up threads on a hung server."""
        limit = self._settings.connect_timeout + HEALTH_MARGIN_SECONDS
        if not self._running.acquire(blocking=False):
            return failed_report(self._settings, "the previous health check is still "
                                                 "waiting for Redis")
        answers: list[dict[str, Any]] = []

        def check() -> None:
            try:
                answers.append(self._report())
            finally:
                self._running.release()

        worker = threading.Thread(target=contextvars.copy_context().run, args=(check,),
                                  name="flask-core-redis health", daemon=True)
        worker.start()
        worker.join(limit)
        if answers:
            return answers[0]
        return failed_report(self._settings, f"no answer within {limit * 1000:.0f} ms")

    async def _arun(self) -> dict[str, Any]:
        limit = self._settings.connect_timeout + HEALTH_MARGIN_SECONDS
        try:
            return await asyncio.wait_for(self._areport(), limit)
        except asyncio.TimeoutError:
            return failed_report(self._settings, f"no answer within {limit * 1000:.0f} ms")

    def _report(self) -> dict[str, Any]:
        """The check itself, on a client of its own whose every read waits at
        most CONNECT_TIMEOUT, with no retries; the plugins are asked only when
        the server answered (their parts use the shared client)."""
        return self._with_plugins(check_health(self._client, self._settings),
                                  self._plugins.health)

    async def _areport(self) -> dict[str, Any]:
        client = self._async_client("health", **self._bounded())
        report = await acheck_health(client, self._settings)
        parts: dict[str, Any] = {}
        if report["ok"]:
            parts = await asyncio.to_thread(contextvars.copy_context().run,
                                            self._plugins.health)
        return self._with_plugins(report, lambda: parts)

    @staticmethod
    def _with_plugins(report: dict[str, Any],
                      plugin_parts: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        parts = plugin_parts() if report["ok"] else {}
        report["plugins"] = parts
        report["ok"] = report["ok"] and all(
            part.get("ok", True) for part in parts.values() if isinstance(part, dict))
        return report

    def _bounded(self) -> dict[str, Any]:
        """The health client's settings: no retries, every read within
        CONNECT_TIMEOUT."""
        return {"max_retries": 0, "retry_deadline_ms": None,
                "socket_timeout_ms": self._settings.connect_timeout_ms}

    def _client(self) -> AnyClient:
        return self._own_client("health", **self._bounded())
