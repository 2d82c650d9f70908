"""Which app is current, in Flask and in Quart.

Quart (the Pallets project's asyncio Flask) shares Flask's app API through
``flask.sansio`` but keeps its own contexts: ``flask.current_app`` is unset
inside a Quart request or CLI command. These helpers look in Flask's
contexts, then in Quart's when Quart is imported; nothing here imports
Quart."""

from __future__ import annotations

import sys
from typing import Any

import flask

try:  # What Flask's and Quart's apps share, from Flask 3.
    from flask.sansio.app import App as AnyApp
except ImportError:  # Flask 2.3: no Quart runs on it
    AnyApp = flask.Flask  # type: ignore[misc]

__all__ = ["AnyApp", "current_app_object", "has_app_context", "is_quart"]


def current_app_object() -> Any | None:
    """The app of the current Flask or Quart app context, or None."""
    if flask.has_app_context():
        return flask.current_app._get_current_object()  # type: ignore[attr-defined]
    quart = sys.modules.get("quart")
    if quart is not None and quart.has_app_context():
        return quart.current_app._get_current_object()
    return None


def has_app_context() -> bool:
    """Whether a Flask or Quart app context is pushed."""
    return current_app_object() is not None


def is_quart(app: Any) -> bool:
    """Whether ``app`` is a Quart app (it serves on one event loop, with
    ``before_serving`` and ``after_serving`` hooks)."""
    quart = sys.modules.get("quart")
    return quart is not None and isinstance(app, quart.Quart)
