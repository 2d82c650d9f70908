"""The presence plugin's instruments and spans (``flask_core_redis.presence.*``):
counts and outcomes only, never a user or connection id."""

from __future__ import annotations

from ...plugin_api import PluginContext


class PresenceTelemetry:
    """The instruments one app's presence plugin records with, and its spans."""

    def __init__(self, context: PluginContext) -> None:
        telemetry = context.telemetry
        self.opens = telemetry.counter(
            "presence.opens", "{connection}", "Connections opened or renewed (mark_online, "
            "connect), by whether the user was offline until then", {"came_online": bool})
        self.closes = telemetry.counter(
            "presence.closes", "{connection}", "Connections closed (mark_offline, "
            "disconnect), by whether the user went offline", {"went_offline": bool})
        self.sweeps = telemetry.counter("presence.sweeps", "{sweep}", "Sweeps run by sweep() "
                                        "(opens also sweep a few users as they go)")
        self.offline = telemetry.counter(
            "presence.offline", "{user}", "Users who went offline: by a close, or found by "
            "a sweep once their last connection expired (announced to on_offline)",
            {"reason": ("closed", "swept")})
        self.refused = telemetry.counter(
            "presence.refused", "{connection}", "Connections refused: the user held "
            "PRESENCE_MAX_CONNECTIONS live ones")
        self.spans = {
            "open": telemetry.span("presence.open", {"came_online": bool, "refused": bool}),
            "close": telemetry.span("presence.close", {"went_offline": bool}),
            "sweep": telemetry.span("presence.sweep", {"users": int}),
        }
