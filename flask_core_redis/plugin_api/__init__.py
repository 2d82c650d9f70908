"""The plugin API: everything a plugin, built-in or third-party, is written
against. Hook specs and the ``hookimpl`` marker, the :class:`PluginContext`
a plugin receives, :class:`Key` and the value parsers for its configuration
keys, the Lua script helper, and the value helpers the built-ins use.

Built-in plugins import from here and nowhere else in the package."""

from ..config import Key, parsers
from ..config.parsers import InvalidValue
from ..connection.operations import (
    Call,
    CallRenewing,
    Command,
    Operation,
    Pause,
    Pipeline,
    Step,
    arun,
    run,
)
from ..connection.retry import CAP_SECONDS as RETRY_DELAY_CAP_SECONDS
from ..connection.tracking import KeyTracking, TrackingSink
from ..errors import OUTAGE_ERRORS, ConfigurationError, RedisUnavailable, describe_error
from ..telemetry import Attributes as TelemetryAttributes
from ..telemetry import Telemetry
from ..values import MAX_TTL_SECONDS, as_text, ttl_ms
from .context import PluginContext
from .hookspecs import hookimpl, hookspec
from .lua import (
    MIN_REPLAY_MS,
    NOW_MS,
    LuaScript,
    once_call,
    once_prelude,
    replay_window_ms,
    run_scripts,
    scripts_operation,
)

__all__ = [
    "MAX_TTL_SECONDS",
    "MIN_REPLAY_MS",
    "NOW_MS",
    "OUTAGE_ERRORS",
    "RETRY_DELAY_CAP_SECONDS",
    "Call",
    "CallRenewing",
    "Command",
    "ConfigurationError",
    "InvalidValue",
    "Key",
    "KeyTracking",
    "LuaScript",
    "Operation",
    "Pause",
    "Pipeline",
    "PluginContext",
    "RedisUnavailable",
    "Step",
    "Telemetry",
    "TelemetryAttributes",
    "TrackingSink",
    "arun",
    "as_text",
    "describe_error",
    "hookimpl",
    "hookspec",
    "once_call",
    "once_prelude",
    "parsers",
    "replay_window_ms",
    "run",
    "run_scripts",
    "scripts_operation",
    "ttl_ms",
]
