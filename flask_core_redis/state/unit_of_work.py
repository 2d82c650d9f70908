"""What a request or a CLI command leaves open: the clients and
subscriptions the app makes inside one are closed when it ends."""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

import click
from flask import Flask, Response, has_request_context, request

from ..errors import describe_error

logger = logging.getLogger("flask_core_redis")


class Closeable(Protocol):
    def close(self) -> Any: ...


class UnitOfWork:
    """Closes what one registration's app hands out inside a request when the
    response has been sent (so a streamed response can read a subscription its
    view made), or at the request's teardown if it ended without a response;
    inside a CLI command, when the command ends. Only weak references are kept:
    what the app drops is closed by garbage collection."""

    def __init__(self, prefix: str) -> None:
        self._environ_key = f"flask_core_redis.close_after.{prefix}"

    def install(self, app: Flask) -> None:
        """Close, after each of ``app``'s requests, what it left open."""
        app.after_request(self._close_after_response)
        app.teardown_request(self._close_left_over)

    def close_with(self, *resources: Closeable) -> None:
        """Close ``resources`` when the current request's response has been
        sent, or when the current CLI command ends; never, anywhere else."""
        held = [weakref.ref(resource) for resource in resources]
        if has_request_context():
            request.environ.setdefault(self._environ_key, []).extend(held)
            return
        command = click.get_current_context(silent=True)
        if command is not None:
            command.call_on_close(functools.partial(_close_alive, held))

    def _close_after_response(self, response: Response) -> Response:
        held = request.environ.pop(self._environ_key, None)
        if held:
            response.call_on_close(functools.partial(_close_alive, held))
        return response

    def _close_left_over(self, error: BaseException | None = None) -> None:
        """A request that ended without a response, or a stream's request
        context that made them while streaming."""
        _close_alive(request.environ.pop(self._environ_key, ()))


def _close_alive(held: Iterable[weakref.ref[Closeable]]) -> None:
    """Close what is still alive; a failure is logged, never raised, since it
    happens after the response or command is over."""
    for reference in held:
        resource = reference()
        try:
            if resource is not None:
                resource.close()
        except Exception as error:
            logger.warning("closing a %s failed: %s", type(resource).__name__,
                           describe_error(error))
