"""What the parts of a Sentinel watch do while it stops, without servers:
a connection that fails just then, an event that comes just then."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest

from flask_core_redis.connection.events import ConnectionEvent, ConnectionEvents
from flask_core_redis.connection.sentinel.links import SentinelLinks
from flask_core_redis.connection.sentinel.threads import EventRelay


class _ClosedMidHandshake:
    """A connection whose handshake, given up by its caller, ends with a
    failure of its own: the sentinel's end of the socket closed as it was
    torn down, the reply read as the end of the stream."""

    async def connect(self) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise ConnectionError("Connection closed by server.") from None


def test_a_connect_that_fails_as_the_watch_stops_is_not_reported_unretrieved() -> None:
    """asyncio reports a task whose failure nobody read ("Task exception was
    never retrieved", on stderr at exit; a whole run of the suite showed one
    from a sentinel connect): a connect that ends with a failure of its own
    after the watch stopped waiting for it must have that failure read."""
    reports: list[dict[str, Any]] = []

    async def connect_and_stop() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: reports.append(context))
        links = SentinelLinks({}, connect_timeout=5)
        caller = asyncio.ensure_future(links.connect(_ClosedMidHandshake()))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        del caller
        gc.collect()

    asyncio.run(connect_and_stop())
    assert [report["message"] for report in reports] == []


def test_an_event_from_a_watch_still_stopping_starts_no_thread() -> None:
    """A watch closed without waiting (its app collected) stops its event
    thread while its loop may still be ending: an event from that loop must
    not start a thread that nobody would ever stop. Once the watch starts
    again, events flow again."""
    heard: list[ConnectionEvent] = []
    events = ConnectionEvents("shop")
    events.subscribe(heard.append)
    relay = EventRelay(events, "relay under test")

    def relay_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "relay under test"]

    relay.open()
    relay.emit("sentinel", address="sentinel 127.0.0.1:1", detail="first")
    relay.stop(wait=1)
    relay.emit("sentinel", address="sentinel 127.0.0.1:1", detail="late")
    assert relay_threads() == []
    relay.open()
    relay.emit("sentinel", address="sentinel 127.0.0.1:1", detail="again")
    relay.stop(wait=1)
    assert [event.detail for event in heard] == ["first", "again"]
    assert relay_threads() == []
