"""The demo's stand-in for an SMS gateway: it keeps the last message sent to
each phone in this process, for the login page to show. Give ``create_app``
a sender of your own (``async def send(phone, text)``) to send real ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: What sends a text message: ``await send(phone, text)``.
SendSms = Callable[[str, str], Awaitable[None]]


class DevOutbox:
    """The last message to each phone, in this process only (so with one
    worker): a development tool, never a way to deliver codes."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    async def send(self, phone: str, text: str) -> None:
        self._last[phone] = text

    def last_message_to(self, phone: str) -> str | None:
        return self._last.get(phone)
