"""The OTP plugin: issue codes, verify them once, limit attempts and sends.

Redis never holds a code: only an HMAC-SHA256 digest keyed by the app's
``SECRET_KEY``. Issuing and verifying are each one Lua script, on keys that
share the phone's hash tag, so concurrent verifications of one code get
exactly one success, in Cluster too."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from flask import Flask
from redis.exceptions import RedisError

from ...plugin_api import (
    MAX_TTL_SECONDS,
    ConfigurationError,
    Key,
    LuaScript,
    Operation,
    PluginContext,
    RedisUnavailable,
    arun,
    as_text,
    describe_error,
    hookimpl,
    once_call,
    parsers,
    replay_window_ms,
    run,
    ttl_ms,
)
from .digits import normalize_code, normalize_phone
from .scripts import CHECK, ISSUE
from .telemetry import OtpTelemetry

logger = logging.getLogger("flask_core_redis")

T = TypeVar("T")
Status = Literal["ok", "invalid", "expired", "locked"]

CODE_DIGITS = 6
#: How long an expired code is remembered, so that it reads "expired".
EXPIRED_GRACE_MS = 600_000

#: The plugin's configuration keys (``REDIS_OTP_TTL``...).
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


class OtpUnavailable(RedisUnavailable):
    """Redis could not be reached: the code can be neither stored nor checked.
    A :class:`RedisUnavailable`, so ``REDIS_ERROR_HANDLER`` answers 503."""


class OtpRateLimited(RuntimeError):
    """Too soon, or too many codes, for this phone; ``retry_after`` in seconds."""

    def __init__(self, reason: Literal["cooldown", "too_many"], retry_after: float) -> None:
        #: ``cooldown`` (a code was sent moments ago) or ``too_many`` (the
        #: send limit of the window is reached).
        self.reason = reason
        #: Seconds until a new code can be sent.
        self.retry_after = retry_after
        what = ("a code was sent moments ago" if reason == "cooldown"
                else "too many codes were sent to this phone")
        super().__init__(f"{what}; try again in {retry_after:.0f} s")


@dataclass(frozen=True)
class OtpCheck:
    """The outcome of :meth:`OtpPlugin.check`."""

    #: ``ok`` (the code was right, and is now used up), ``invalid`` (a wrong
    #: code, or a phone with no code), ``expired`` or ``locked`` (too many
    #: wrong attempts).
    status: Status
    #: Wrong attempts still allowed on this code; 0 when expired or locked.
    attempts_left: int

    @property
    def ok(self) -> bool:
        """Whether the code was right (``status == "ok"``)."""
        return self.status == "ok"


class OtpPlugin:
    """``ext.otp``: issue codes, verify them once, with attempt and send limits."""

    #: This app's plugin context, set by :meth:`core_redis_setup`.
    context: PluginContext

    @hookimpl
    def core_redis_setup(self, app: Flask, context: PluginContext) -> None:
        """Read the ``OTP_*`` keys; warn, without failing, when the app has no
        ``SECRET_KEY`` (the plugin then refuses to issue or check codes)."""
        self.context = context
        self.ttl, self.max_attempts, self.cooldown, self.max_sends, self.window = (
            context.setting(key) for key in CONFIG_KEYS)
        self._replay_ms = replay_window_ms(context.settings)
        self._telemetry = OtpTelemetry(context)
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

    def _run(self, operation: Operation[T], span: str) -> T:
        """``operation`` in the span ``otp.<span>``, with the blocking
        fail-fast client."""
        return run(self._telemetry.spans[span].traced(operation),
                   self.context.fail_fast_client())

    async def _arun(self, operation: Operation[T], span: str) -> T:
        """``operation`` in the span ``otp.<span>``, with the asyncio fail-fast
        client of the running loop."""
        return await arun(self._telemetry.spans[span].traced(operation),
                          self.context.fail_fast_async_client())

    def _script_op(self, script: LuaScript, number: str, names: list[str],
                   args: list[Any]) -> Operation[tuple[Any, int]]:
        """``script`` on the number's keys ``names``, as one call: if the core
        sends it again after a lost reply, the script answers with the first
        run's reply instead of running twice."""
        tag = self.context.slot_tag("otp", number)
        keys, args = once_call(tag, self._replay_ms, [f"{tag}:{name}" for name in names], args)
        try:
            status, count = yield from script.operation(keys, args)
        except RedisError as error:
            self._telemetry.outages.add(1, operation="check" if script is CHECK else "issue")
            raise OtpUnavailable(f"the OTP store is unavailable: "
                                 f"{describe_error(error)}") from error
        return as_text(status), int(count)

    def issue(self, phone: str, ttl: float | None = None) -> str:
        """A new 6-digit code for ``phone`` (send it yourself); the previous one
        stops working. Raises OtpRateLimited within the cooldown or past the
        send limit."""
        return self._run(self._issue_op(phone, ttl), "issue")

    async def aissue(self, phone: str, ttl: float | None = None) -> str:
        """:meth:`issue` from async code."""
        return await self._arun(self._issue_op(phone, ttl), "issue")

    def _issue_op(self, phone: str, ttl: float | None) -> Operation[str]:
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        yield from self._store_op(phone, code, ttl)
        return code

    def store_otp(self, phone: str, code: str, ttl: float | None = None) -> None:
        """Store ``code`` for ``phone`` for ``ttl`` seconds, under the same limits
        as :meth:`issue`."""
        self._run(self._store_op(phone, code, ttl), "issue")

    async def astore_otp(self, phone: str, code: str, ttl: float | None = None) -> None:
        """:meth:`store_otp` from async code."""
        await self._arun(self._store_op(phone, code, ttl), "issue")

    def _store_op(self, phone: str, code: str, ttl: float | None) -> Operation[None]:
        key = self._digest_key()
        number, code = normalize_phone(phone), normalize_code(code)
        lifetime_ms = ttl_ms(self.ttl if ttl is None else ttl)
        status, wait_ms = yield from self._script_op(ISSUE, number, [
            "code", "cooldown", "sends"], [
            self._digest(key, number, code), lifetime_ms, self.cooldown * 1000,
            self.max_sends, self.window * 1000, EXPIRED_GRACE_MS, len(code)])
        if status != "ok":
            self._telemetry.refused.add(1, reason=status)
            self._telemetry.spans["issue"].note(outcome=status)
            raise OtpRateLimited(status, wait_ms / 1000)
        self._telemetry.issued.add(1)
        self._telemetry.spans["issue"].note(outcome="issued")

    def check(self, phone: str, code: str) -> OtpCheck:
        """``ok`` (and the code is used up), ``invalid`` (wrong code or unknown
        phone, indistinguishably), ``expired`` or ``locked``. A phone or code
        that is not one is a ValueError, and costs no attempt; so is a code
        with another number of digits than the stored one (an unknown phone
        expects as many as :meth:`issue` gives)."""
        return self._run(self._check_op(phone, code), "verify")

    async def acheck(self, phone: str, code: str) -> OtpCheck:
        """:meth:`check` from async code."""
        return await self._arun(self._check_op(phone, code), "verify")

    def _check_op(self, phone: str, code: str) -> Operation[OtpCheck]:
        key = self._digest_key()
        number, code = normalize_phone(phone), normalize_code(code)
        status, count = yield from self._script_op(CHECK, number, ["code"], [
            self._digest(key, number, code), len(code), self.max_attempts, self.ttl * 1000,
            EXPIRED_GRACE_MS, CODE_DIGITS])
        if status == "digits":
            raise ValueError(f"invalid code: expected {count} digits, not {len(code)}")
        if status == "lockout":  # this wrong attempt was the last one allowed
            self._telemetry.lockouts.add(1)
            status = "locked"
        self._telemetry.verifications.add(1, outcome=status)
        self._telemetry.spans["verify"].note(outcome=status)
        return OtpCheck(status, count)

    def verify_otp(self, phone: str, code: str) -> bool:
        """True once for the right code; False otherwise. Fails closed:
        OtpUnavailable when Redis cannot be reached, never True."""
        return self._run(self._check_op(phone, code), "verify").ok

    async def averify_otp(self, phone: str, code: str) -> bool:
        """:meth:`verify_otp` from async code; fails closed as it does."""
        return (await self._arun(self._check_op(phone, code), "verify")).ok
