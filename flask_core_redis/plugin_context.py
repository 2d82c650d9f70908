"""What a plugin sees of one app's Redis registration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ConfigSource, Key

if TYPE_CHECKING:
    from .clients import AnyClient
    from .extension import RedisState


class PluginContext:
    """A plugin's handle on one app's Redis: the shared client, key names under
    the app's ``KEY_PREFIX``, its own configuration keys, and the settings with
    every secret masked. It never hands out credentials."""

    def __init__(self, state: RedisState, source: ConfigSource, app_name: str) -> None:
        self._state = state
        self._source = source
        self.app_name = app_name
        self.config_prefix = state.settings.prefix
        self.mode = state.settings.mode
        self.key_prefix = state.settings.key_prefix

    def __repr__(self) -> str:
        return f"<PluginContext {self.app_name} {self.config_prefix} {self.mode}>"

    @property
    def settings(self) -> dict[str, object]:
        """The registration's settings, secrets as ``***``."""
        return self._state.settings.describe()

    @property
    def client(self) -> AnyClient:
        """The app's shared, pooled client."""
        return self._state.client

    def duplicate(self) -> AnyClient:
        """A client of its own, for pub/sub and blocking commands."""
        return self._state.duplicate()

    def serializer(self) -> Any:
        """The serializer a plugin supplies through ``core_redis_serializer``,
        or None."""
        plugins = self._state.plugins
        return plugins.serializer() if plugins is not None else None

    def setting(self, key: Key) -> Any:
        """Read and validate one of the plugin's own keys (``{prefix}_{suffix}``)."""
        return self._source.get(key)

    def key(self, namespace: str, *parts: object) -> str:
        """``KEY_PREFIX + namespace + ":" + parts``, e.g. ``shop:cache:v1:user:7``."""
        return ":".join([f"{self.key_prefix}{namespace}", *map(str, parts)])

    def slot_tag(self, namespace: str, *parts: object) -> str:
        """Like :meth:`key`, as a Cluster hash tag: keys that start with the same
        tag live in one slot, so one script may use them all."""
        return "{" + self.key(namespace, *parts) + "}"
