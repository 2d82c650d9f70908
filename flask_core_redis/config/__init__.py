"""Configuration: the key table (the one home of every default), the value
parsers, where values come from, the URL grammar and the frozen settings."""

from .keys import KEYS, Key, key_table
from .loader import load_settings, settings_from
from .settings import MASK, Mode, Settings
from .sources import ConfigSource, config_source

__all__ = ["KEYS", "MASK", "ConfigSource", "Key", "Mode", "Settings", "config_source",
           "key_table", "load_settings", "settings_from"]
