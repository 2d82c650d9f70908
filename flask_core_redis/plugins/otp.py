"""One-time passwords sent by SMS (or any channel): issue, verify once, limit.

Redis never holds a code: only an HMAC-SHA256 digest keyed by the app's
``SECRET_KEY``. Issuing and verifying are each one Lua script, on keys that
share the phone's hash tag, so concurrent verifications of one code get
exactly one success, in Cluster too."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from flask import Flask
from redis.exceptions import RedisError

from ..plugin_api import (
    MAX_TTL_SECONDS,
    NOW_MS,
    ConfigurationError,
    Key,
    LuaScript,
    PluginContext,
    RedisUnavailable,
    as_text,
    describe_error,
    hookimpl,
    parsers,
    ttl_ms,
)

logger = logging.getLogger("flask_core_redis")

Status = Literal["ok", "invalid", "expired", "locked"]

CODE_DIGITS = 6
#: How long an expired code is remembered, so that it reads "expired".
EXPIRED_GRACE_MS = 600_000

CONFIG_KEYS = (
    Key("OTP_TTL", 300, parsers.integer(1, MAX_TTL_SECONDS), "OTP: seconds a code stays "
        "valid."),
    Key("OTP_MAX_ATTEMPTS", 5, parsers.integer(1), "OTP: wrong attempts before a code is "
        "locked."),
    Key("OTP_RESEND_COOLDOWN", 60, parsers.integer(0, MAX_TTL_SECONDS), "OTP: seconds "
        "between two codes for one phone."),
    Key("OTP_MAX_SENDS", 5, parsers.integer(1), "OTP: codes per phone per send window."),
    Key("OTP_SEND_WINDOW", 600, parsers.integer(1, MAX_TTL_SECONDS), "OTP: the send "
        "window, in seconds."),
)

_NO_SECRET_KEY = (
    "the otp plugin keys its code digests with the app's SECRET_KEY, and SECRET_KEY is "
    "not set. Set app.config['SECRET_KEY'] to a long random value (for example the "
    "output of: python -c 'import secrets; print(secrets.token_hex(32))'), or add 'otp' "
    "to {prefix}_DISABLED_PLUGINS if the app does not use one-time passwords")

_PHONE = re.compile(r"\+?\d{7,15}")
_PHONE_NOISE = re.compile(r"[\s\-().]")
_CODE = re.compile(r"\d{4,10}")

# KEYS code, cooldown, sends. ARGV digest, ttl, cooldown, max sends, window,
# grace (all ms but max sends), nonce.
_ISSUE = LuaScript(NOW_MS + """
local wait = redis.call('PTTL', KEYS[2])
if wait > 0 then return {'cooldown', wait} end
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return {'too_many', tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[3], now, now .. ':' .. ARGV[7])
redis.call('PEXPIRE', KEYS[3], window)
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'exp', now + tonumber(ARGV[2]), 'attempts', 0)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[6]))
return {'ok', 0}
""")

# KEYS code. ARGV digest, max attempts, ttl for an unknown phone, grace (ms).
# An unknown phone gets a record no code matches, so that it answers exactly
# as a wrong code does, attempts and lock-out included.
_CHECK = LuaScript(NOW_MS + """
local max = tonumber(ARGV[2])
local record = redis.call('HMGET', KEYS[1], 'digest', 'exp', 'attempts')
if not record[1] then
  record = {'', tostring(now + tonumber(ARGV[3])), '0'}
  redis.call('HSET', KEYS[1], 'digest', record[1], 'exp', record[2], 'attempts', 0)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]))
end
if now >= tonumber(record[2]) then return {'expired', 0} end
local attempts = tonumber(record[3])
if attempts >= max then return {'locked', 0} end
if record[1] ~= '' and record[1] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {'ok', max - attempts}
end
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts >= max then return {'locked', 0} end
return {'invalid', max - attempts}
""")


class OtpUnavailable(RedisUnavailable):
    """Redis could not be reached: the code can be neither stored nor checked.
    A :class:`RedisUnavailable`, so ``REDIS_ERROR_HANDLER`` answers 503."""


class OtpRateLimited(RuntimeError):
    """Too soon, or too many codes, for this phone; ``retry_after`` in seconds."""

    def __init__(self, reason: Literal["cooldown", "too_many"], retry_after: float) -> None:
        self.reason = reason
        self.retry_after = retry_after
        what = ("a code was sent moments ago" if reason == "cooldown"
                else "too many codes were sent to this phone")
        super().__init__(f"{what}; try again in {retry_after:.0f} s")


@dataclass(frozen=True)
class OtpCheck:
    """The outcome of :meth:`OtpPlugin.check`."""

    status: Status
    attempts_left: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def normalize_phone(phone: object) -> str:
    """``"+1 (555) 010-99 88"`` -> ``"+15550109988"``; ValueError if not a phone."""
    text = _PHONE_NOISE.sub("", phone) if isinstance(phone, str) else ""
    if not _PHONE.fullmatch(text):
        raise ValueError(f"invalid phone number {phone!r}: expected 7 to 15 digits with "
                         "an optional leading '+' (spaces, dashes, dots and brackets "
                         "are ignored)")
    return text


def _check_code(code: object) -> str:
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise ValueError("invalid code: expected a string of 4 to 10 digits")
    return code


class OtpPlugin:
    """``ext.otp``: issue codes, verify them once, with attempt and send limits."""

    context: PluginContext

    @hookimpl
    def core_redis_setup(self, app: Flask, context: PluginContext) -> None:
        self.context = context
        self.ttl, self.max_attempts, self.cooldown, self.max_sends, self.window = (
            context.setting(key) for key in CONFIG_KEYS)
        self._config = app.config  # SECRET_KEY is read at each use: it may come later
        if not self._config.get("SECRET_KEY"):  # the app starts; OTP refuses to work
            logger.warning("[%s] one-time passwords are unavailable until SECRET_KEY is "
                           "set: %s", context.config_prefix, self._no_key_message())

    def _no_key_message(self) -> str:
        return _NO_SECRET_KEY.format(prefix=self.context.config_prefix)

    def _digest_key(self) -> bytes:
        """The key of this app's code digests, derived from SECRET_KEY; a
        ConfigurationError, before anything else is done, without one."""
        secret = self._config.get("SECRET_KEY")
        if not secret:
            raise ConfigurationError(self._no_key_message())
        secret_bytes = secret if isinstance(secret, bytes) else str(secret).encode()
        return hmac.new(secret_bytes, b"flask-core-redis/otp", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"<OtpPlugin {self.context.app_name}>"

    @staticmethod
    def _digest(key: bytes, phone: str, code: str) -> str:
        return hmac.new(key, f"{phone}\0{code}".encode(), hashlib.sha256).hexdigest()

    def _keys(self, phone: str) -> list[str]:
        tag = self.context.slot_tag("otp", phone)
        return [f"{tag}:code", f"{tag}:cooldown", f"{tag}:sends"]

    def _run(self, script: LuaScript, keys: list[str], args: list[Any]) -> tuple[Any, int]:
        try:
            status, number = script(self.context.client, keys, args)
        except RedisError as error:
            raise OtpUnavailable(f"the OTP store is unavailable: "
                                 f"{describe_error(error)}") from error
        return as_text(status), int(number)

    def issue(self, phone: str, ttl: float | None = None) -> str:
        """A new 6-digit code for ``phone`` (send it yourself); the previous one
        stops working. Raises OtpRateLimited within the cooldown or past the
        send limit."""
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        self.store_otp(phone, code, ttl)
        return code

    def store_otp(self, phone: str, code: str, ttl: float | None = None) -> None:
        """Store ``code`` for ``phone`` for ``ttl`` seconds, under the same limits
        as :meth:`issue`."""
        key = self._digest_key()
        number = normalize_phone(phone)
        lifetime_ms = ttl_ms(self.ttl if ttl is None else ttl)
        status, wait_ms = self._run(_ISSUE, self._keys(number), [
            self._digest(key, number, _check_code(code)), lifetime_ms, self.cooldown * 1000,
            self.max_sends, self.window * 1000, EXPIRED_GRACE_MS, secrets.token_hex(4)])
        if status != "ok":
            raise OtpRateLimited(status, wait_ms / 1000)

    def check(self, phone: str, code: str) -> OtpCheck:
        """``ok`` (and the code is used up), ``invalid`` (wrong code or unknown
        phone, indistinguishably), ``expired`` or ``locked``."""
        key = self._digest_key()
        number = normalize_phone(phone)
        status, left = self._run(_CHECK, self._keys(number)[:1], [
            self._digest(key, number, _check_code(code)), self.max_attempts, self.ttl * 1000,
            EXPIRED_GRACE_MS])
        return OtpCheck(status, left)

    def verify_otp(self, phone: str, code: str) -> bool:
        """True once for the right code; False otherwise. Fails closed:
        OtpUnavailable when Redis cannot be reached, never True."""
        return self.check(phone, code).ok
