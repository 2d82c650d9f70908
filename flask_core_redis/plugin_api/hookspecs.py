"""The hooks a flask-core-redis plugin can implement.

Every hook gets a :class:`~flask_core_redis.plugin_api.context.PluginContext`,
the plugin's view of one app's Redis registration: a client, key names under
the app's prefix, masked settings; never the credentials.

Every hook runs through the enabled plugins in one order: the order of
``REDIS_PLUGINS`` when it is set, else plugin names in alphabetical order.
A hook implementation may declare only the arguments it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from flask import Flask

    from ..connection.events import ConnectionEvent
    from .context import PluginContext

#: The pluggy project name of the hooks, and of the plugins' entry point group.
PROJECT = "flask_core_redis"

#: Marks a hook specification (the functions of this module).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's method (or a plugin module's function) as its
#: implementation of the hook of the same name: ``@hookimpl``. Hook wrappers
#: (``wrapper=True``, ``hookwrapper=True``) are refused.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def core_redis_setup(app: Flask, context: PluginContext) -> None:
    """Set the plugin up for ``app``; raise to refuse (init_app then fails)."""


@hookspec
def core_redis_client_created(context: PluginContext, client: Any) -> None:
    """A client was built: the shared one, or one made by ``duplicate()``."""


@hookspec
def core_redis_connection_event(context: PluginContext, event: ConnectionEvent) -> None:
    """A connection connected, disconnected, failed or is being retried; on
    Sentinel also a subscription to a sentinel opened or lost, and a failover
    (those from a thread of the extension's, outside any app context). Must
    not block: the next event waits for it."""


@hookspec
def core_redis_commands(context: PluginContext, group: click.Group) -> None:
    """Add subcommands under ``flask redis``."""


@hookspec
def core_redis_health(context: PluginContext) -> dict[str, Any] | None:
    """Return this plugin's part of ``ext.health()`` (under its own name)."""


@hookspec
def core_redis_closing(context: PluginContext) -> None:
    """The app's Redis clients are about to close."""


@hookspec(firstresult=True)
def core_redis_serializer(context: PluginContext) -> Any:
    """Return the serializer for cached values: ``dumps(value)`` gives str or
    bytes, ``loads(data)`` is given bytes. The first plugin in hook order that
    returns one wins."""
