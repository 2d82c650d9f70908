"""One pluggy manager per app registration: built-in plugins and the ones
installed under the ``flask_core_redis`` entry-point group, enabled by
``REDIS_PLUGINS`` / ``REDIS_DISABLED_PLUGINS``."""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points, version
from typing import Any

import pluggy
from flask import Flask

from . import hookspecs
from .errors import ConfigurationError, describe_error
from .events import ConnectionEvent
from .plugin_context import PluginContext
from .settings import Settings

ENTRY_POINT_GROUP = "flask_core_redis"

#: Built-in plugins: ordinary plugins, registered like third-party ones.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("presence", "flask_core_redis.plugins.presence:PresencePlugin"),
    ("otp", "flask_core_redis.plugins.otp:OtpPlugin"),
    ("cache", "flask_core_redis.plugins.cache:CachePlugin"),
)


class PluginError(RuntimeError):
    """A plugin failed; the message names it."""


@dataclass(frozen=True)
class Available:
    """A plugin that could be enabled: its name, where it comes from, a loader."""

    name: str
    version: str
    source: str
    load: Callable[[], Any] = field(repr=False)


def _import_object(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def available_plugins() -> dict[str, Available]:
    """Built-ins first, then installed entry points, by name."""
    ours = version("flask-core-redis")
    found = {name: Available(name, ours, "built-in", functools.partial(_import_object, path))
             for name, path in DEFAULT_PLUGINS}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            raise ConfigurationError(
                f"the plugin entry point {entry.value!r} reuses the name {entry.name!r}, "
                f"already taken by the {found[entry.name].source} plugin; rename it")
        dist = entry.dist
        found[entry.name] = Available(
            entry.name, dist.version if dist else "?",
            f"entry point ({dist.name if dist else entry.value})", entry.load)
    return found


def _enabled(settings: Settings, available: dict[str, Available]) -> list[Available]:
    wanted = settings.plugins if settings.plugins is not None else tuple(available)
    for key, names in (("PLUGINS", wanted), ("DISABLED_PLUGINS", settings.disabled_plugins)):
        unknown = sorted(set(names) - set(available))
        if unknown:
            raise ConfigurationError(
                f"{settings.prefix}_{key} names unknown plugin(s) {', '.join(unknown)}; "
                f"available: {', '.join(available)}")
    return [available[name] for name in wanted if name not in settings.disabled_plugins]


@dataclass(frozen=True)
class PluginRecord:
    """An enabled plugin as ``flask redis plugins`` lists it."""

    name: str
    version: str
    source: str
    hooks: tuple[str, ...]
    plugin: Any = field(repr=False)


class Plugins:
    """The enabled plugins of one app registration and the hooks they answer."""

    def __init__(self, settings: Settings, context: PluginContext) -> None:
        self.context = context
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        for item in _enabled(settings, available_plugins()):
            self._register(item)

    def _register(self, item: Available) -> None:
        try:
            loaded = item.load()
            plugin = loaded() if inspect.isclass(loaded) else loaded
            self.manager.register(plugin, name=item.name)
        except Exception as error:
            raise PluginError(f"plugin {item.name!r} ({item.source}) could not be "
                              f"loaded: {describe_error(error)}") from error
        hooks = tuple(caller.name for caller in self.manager.get_hookcallers(plugin) or ())
        self.records[item.name] = PluginRecord(item.name, item.version, item.source,
                                               hooks, plugin)

    def __iter__(self) -> Iterator[PluginRecord]:
        return iter(self.records.values())

    def _impls(self, hook_name: str) -> list[Any]:
        """A hook's implementations in registration order."""
        return list(getattr(self.manager.hook, hook_name).get_hookimpls())

    @staticmethod
    def _call(impl: Any, **kwargs: Any) -> Any:
        """Call one implementation with only the arguments it declares."""
        return impl.function(**{name: kwargs[name] for name in impl.argnames})

    def setup(self, app: Flask) -> None:
        """Set every plugin up; the first that raises fails init_app, named."""
        for impl in self._impls("core_redis_setup"):
            try:
                self._call(impl, app=app, context=self.context)
            except ConfigurationError as error:
                raise ConfigurationError(f"plugin {impl.plugin_name!r}: {error}") from None
            except Exception as error:
                raise PluginError(f"plugin {impl.plugin_name!r} failed to set up: "
                                  f"{describe_error(error)}") from error

    def client_created(self, client: Any) -> None:
        self.manager.hook.core_redis_client_created(context=self.context, client=client)

    def connection_event(self, event: ConnectionEvent) -> None:
        self.manager.hook.core_redis_connection_event(context=self.context, event=event)

    def add_commands(self, group: Any) -> None:
        self.manager.hook.core_redis_commands(context=self.context, group=group)

    def health(self) -> dict[str, Any]:
        """Each plugin's contribution by name; a failing one reports its error."""
        report: dict[str, Any] = {}
        for impl in self._impls("core_redis_health"):
            try:
                part = self._call(impl, context=self.context)
            except Exception as error:
                part = {"ok": False, "error": describe_error(error)}
            if part is not None:
                report[impl.plugin_name] = part
        return report

    def closing(self) -> None:
        self.manager.hook.core_redis_closing(context=self.context)

    def serializer(self) -> Any:
        return self.manager.hook.core_redis_serializer(context=self.context)
