"""The built-in ``otp`` plugin: one-time passwords sent by SMS (or any
channel), issued and verified once, with attempt and send limits."""

from .digits import normalize_code, normalize_phone
from .plugin import CONFIG_KEYS, OtpCheck, OtpPlugin, OtpRateLimited, OtpUnavailable

__all__ = ["CONFIG_KEYS", "OtpCheck", "OtpPlugin", "OtpRateLimited", "OtpUnavailable",
           "normalize_code", "normalize_phone"]
