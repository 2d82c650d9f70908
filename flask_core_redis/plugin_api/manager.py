"""One pluggy manager per app registration. Every plugin, the built-ins
included, is found through the ``flask_core_redis`` entry-point group and
loaded by the same code; ``REDIS_PLUGINS`` / ``REDIS_DISABLED_PLUGINS`` choose
which run and in what order.

Hook order: every hook runs through the enabled plugins in one order, the
order of ``REDIS_PLUGINS`` when it is set, else plugin names alphabetically.
pluggy registers and validates the implementations, and orders them (it calls
the last-registered first, so plugins are registered in reverse); this module
then calls them one plugin at a time, in that order, so that a failure names
its plugin."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar, cast

import pluggy
from flask import Flask

from ..config import ConfigSource, Settings
from ..connection.events import ConnectionEvent
from ..errors import ConfigurationError, PluginError, describe_error
from . import hookspecs
from .context import PluginContext, Registration

ENTRY_POINT_GROUP = "flask_core_redis"

T = TypeVar("T")

logger = logging.getLogger("flask_core_redis")


def plugin_entry_points() -> list[EntryPoint]:
    """The installed entry points of the ``flask_core_redis`` group: where
    every plugin, built-in or third-party, is found."""
    return list(entry_points(group=ENTRY_POINT_GROUP))


@dataclass(frozen=True)
class Available:
    """A plugin that could be enabled: its name, version and distribution."""

    name: str
    version: str
    origin: str
    load: Callable[[], Any] = field(repr=False)


def available_plugins() -> dict[str, Available]:
    """Every installed plugin by name, in name order."""
    found: dict[str, Available] = {}
    for entry in sorted(plugin_entry_points(), key=lambda entry: entry.name):
        dist = entry.dist
        origin = dist.name if dist is not None else entry.value
        if entry.name in found:
            raise ConfigurationError(
                f"two plugins are named {entry.name!r}: {found[entry.name].origin} and "
                f"{origin}; uninstall or rename one")
        found[entry.name] = Available(entry.name, dist.version if dist else "?", origin,
                                      entry.load)
    return found


def _enabled(settings: Settings, available: dict[str, Available]) -> list[Available]:
    """The plugins to run, in hook order."""
    wanted = settings.plugins if settings.plugins is not None else tuple(available)
    for key, names in (("PLUGINS", wanted), ("DISABLED_PLUGINS", settings.disabled_plugins)):
        unknown = sorted(set(names) - set(available))
        if unknown:
            raise ConfigurationError(
                f"{settings.prefix}_{key} names unknown plugin(s) {', '.join(unknown)}; "
                f"available: {', '.join(available) or 'none'}")
    ordered = dict.fromkeys(wanted)  # a name listed twice runs once, at its first place
    return [available[name] for name in ordered if name not in settings.disabled_plugins]


@dataclass(frozen=True)
class PluginRecord:
    """An enabled plugin as ``flask redis plugins`` lists it."""

    name: str
    version: str
    origin: str
    hooks: tuple[str, ...]
    plugin: Any = field(repr=False)


class Plugins:
    """The enabled plugins of one app registration and the hooks they answer."""

    def __init__(self, registration: Registration, source: ConfigSource,
                 app_name: str) -> None:
        self.context = PluginContext(registration, source, app_name, self.serializer)
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        enabled = _enabled(registration.settings, available_plugins())
        loaded = {item.name: self._load(item) for item in enabled}
        for name in reversed(loaded):  # pluggy calls the last registered first
            self._register(name, loaded[name])
        self.records = {item.name: self._record(item, loaded[item.name])
                        for item in enabled}

    @staticmethod
    def _load(item: Available) -> Any:
        try:
            loaded = item.load()
            return loaded() if inspect.isclass(loaded) else loaded
        except Exception as error:
            raise PluginError(f"plugin {item.name!r} ({item.origin}) could not be "
                              f"loaded: {describe_error(error)}") from error

    def _register(self, name: str, plugin: Any) -> None:
        try:
            self.manager.register(plugin, name=name)
        except Exception as error:
            raise PluginError(f"plugin {name!r} could not be registered: "
                              f"{describe_error(error)}") from error
        for caller in self.manager.get_hookcallers(plugin) or ():
            if any(impl.plugin is plugin and (impl.hookwrapper or impl.wrapper)
                   for impl in caller.get_hookimpls()):
                raise PluginError(f"plugin {name!r} wraps {caller.name}; hook wrappers "
                                  "are not supported")

    def _record(self, item: Available, plugin: Any) -> PluginRecord:
        callers = self.manager.get_hookcallers(plugin) or ()
        hooks = tuple(sorted(caller.name for caller in callers))
        return PluginRecord(item.name, item.version, item.origin, hooks, plugin)

    def __iter__(self) -> Iterator[PluginRecord]:
        return iter(self.records.values())

    def summary(self) -> str:
        """``"cache (CachePlugin), otp (OtpPlugin)"``, in hook order."""
        return ", ".join(f"{record.name} ({type(record.plugin).__name__})"
                         for record in self) or "none"

    def instance_of(self, cls: type[T]) -> T | None:
        """The enabled plugin that is a ``cls`` (or is ``cls``, for a module)."""
        for record in self.records.values():
            if record.plugin is cls or (inspect.isclass(cls)
                                        and isinstance(record.plugin, cls)):
                return cast(T, record.plugin)
        return None

    def _impls(self, hook_name: str) -> list[Any]:
        """A hook's implementations in hook order (pluggy's call order)."""
        return list(reversed(getattr(self.manager.hook, hook_name).get_hookimpls()))

    def _call_one(self, impl: Any, hook_name: str, **kwargs: Any) -> Any:
        """One implementation, with only the arguments it declares. An exception
        is a PluginError naming the plugin; a ConfigurationError stays one."""
        try:
            return impl.function(**{name: kwargs[name] for name in impl.argnames})
        except ConfigurationError as error:
            raise ConfigurationError(f"plugin {impl.plugin_name!r}: {error}") from None
        except Exception as error:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                              f"{describe_error(error)}") from error

    def _call(self, hook_name: str, **kwargs: Any) -> None:
        """Every implementation in hook order; the first failure stops the rest."""
        for impl in self._impls(hook_name):
            self._call_one(impl, hook_name, context=self.context, **kwargs)

    def setup(self, app: Flask) -> None:
        """Set every plugin up; the first that raises fails init_app, named."""
        self._call("core_redis_setup", app=app)

    def client_created(self, client: Any) -> None:
        self._call("core_redis_client_created", client=client)

    def connection_event(self, event: ConnectionEvent) -> None:
        self._call("core_redis_connection_event", event=event)

    def add_commands(self, group: Any) -> None:
        self._call("core_redis_commands", group=group)

    def health(self) -> dict[str, Any]:
        """Each plugin's contribution by name; a failing one reports its error."""
        report: dict[str, Any] = {}
        for impl in self._impls("core_redis_health"):
            try:
                part = self._call_one(impl, "core_redis_health", context=self.context)
            except (PluginError, ConfigurationError) as error:
                part = {"ok": False, "error": describe_error(error.__cause__ or error)}
            if part is not None:
                report[impl.plugin_name] = part
        return report

    def closing(self) -> None:
        """Tell every plugin the clients close. A failure is logged and the
        others still hear of it: the clients close anyway."""
        for impl in self._impls("core_redis_closing"):
            try:
                self._call_one(impl, "core_redis_closing", context=self.context)
            except (PluginError, ConfigurationError) as error:
                logger.error("[%s] %s", self.context.config_prefix, error)

    def serializer(self) -> Any:
        """The first serializer a plugin supplies, in hook order, or None."""
        for impl in self._impls("core_redis_serializer"):
            supplied = self._call_one(impl, "core_redis_serializer", context=self.context)
            if supplied is not None:
                return supplied
        return None
