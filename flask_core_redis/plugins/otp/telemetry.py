"""The OTP plugin's instruments and spans (``flask_core_redis.otp.*``)."""

from __future__ import annotations

from ...plugin_api import PluginContext


class OtpTelemetry:
    """The OTP plugin's instruments and spans (``flask_core_redis.otp.*``):
    outcomes only, never a phone number or a code."""

    def __init__(self, context: PluginContext) -> None:
        telemetry = context.telemetry
        self.issued = telemetry.counter("otp.issued", "{code}", "Codes stored for a phone "
                                        "(issue and store_otp)")
        self.verifications = telemetry.counter(
            "otp.verifications", "{verification}", "Codes checked, by outcome",
            {"outcome": ("ok", "invalid", "expired", "locked")})
        self.lockouts = telemetry.counter("otp.lockouts", "{code}", "Codes locked by the "
                                          "wrong attempt that used up OTP_MAX_ATTEMPTS")
        self.refused = telemetry.counter(
            "otp.sends_refused", "{send}", "Codes refused by the send limits, by reason",
            {"reason": ("cooldown", "too_many")})
        self.outages = telemetry.counter(
            "otp.outages", "{call}", "Calls that failed because Redis could not be "
            "reached (OtpUnavailable)", {"operation": ("issue", "check")})
        outcomes = ("issued", "cooldown", "too_many", "ok", "invalid", "expired", "locked")
        self.spans = {name: telemetry.span(f"otp.{name}", {"outcome": outcomes})
                      for name in ("issue", "verify")}
