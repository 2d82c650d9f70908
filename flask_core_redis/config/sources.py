"""Where configuration values come from: ``app.config``, then the process
environment, then the ``.env`` file of the working directory (read with
python-dotenv, never loaded into ``os.environ``). Only that one file: a
``.env`` in a parent folder is never read, so a writable parent cannot point
the app (or an RQ worker) at another Redis."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from dotenv import dotenv_values

from ..errors import ConfigurationError, describe_error
from .keys import Key
from .parsers import InvalidValue
from .settings import MASK
from .urls import mask_url


class ConfigSource:
    """Looks a key up in app.config, then the environment, then ``.env``.
    Plugins read their own keys through it too, so every key behaves alike."""

    def __init__(self, prefix: str, config: Mapping[str, Any],
                 environ: Mapping[str, str], dotenv: Mapping[str, str | None]) -> None:
        self.prefix = prefix
        self.layers = (config, environ, dotenv)

    def name(self, key: Key) -> str:
        return f"{self.prefix}_{key.suffix}"

    def raw(self, key: Key, skip: Callable[[Any], bool] | None = None) -> Any:
        """The value as found, or None when no layer sets it (empty is unset);
        a value ``skip`` accepts is passed over for the next layer's."""
        for layer in self.layers:
            value = layer.get(self.name(key))
            if value is not None and value != "" and not (skip and skip(value)):
                return value
        return None

    def get(self, key: Key, skip: Callable[[Any], bool] | None = None) -> Any:
        """The parsed value (:meth:`raw`), or the key's default; ConfigurationError
        naming the key, the value (masked when secret) and what is accepted."""
        value = self.raw(key, skip)
        if value is None:
            return key.default
        try:
            return key.parse(value)
        except InvalidValue as error:
            reason = str(error)
        except (TypeError, ValueError) as error:  # a plugin's own parser
            reason = "not accepted" if key.secret else describe_error(error)
        raise ConfigurationError(f"{self.name(key)}={shown_value(key, value)} is invalid: "
                                 f"{reason}")


def shown_value(key: Key, value: Any) -> str:
    """``value`` as an error message may show it: secrets and URL passwords masked."""
    if key.secret:
        return MASK
    if isinstance(value, str | int | float | bool):
        return repr(mask_url(value) if isinstance(value, str) else value)
    # A list or mapping may hold a password anywhere: only its shape is shown.
    size = f" of {len(value)}" if hasattr(value, "__len__") else ""
    return f"<{type(value).__name__}{size}>"


def config_source(prefix: str, config: Mapping[str, Any],
                  environ: Mapping[str, str] | None = None,
                  dotenv: Mapping[str, str | None] | None = None) -> ConfigSource:
    """Where keys for ``prefix`` are looked up; ``.env`` is read once, here."""
    if environ is None:
        environ = os.environ
    if dotenv is None:
        path = os.path.join(os.getcwd(), ".env")
        dotenv = dotenv_values(path) if os.path.isfile(path) else {}
    return ConfigSource(prefix, config, environ, dotenv)
