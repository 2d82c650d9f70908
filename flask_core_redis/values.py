"""Value helpers shared by the core and the plugins: replies as text whatever
``DECODE_RESPONSES`` says, and the one validator of time-to-live arguments."""

from __future__ import annotations

#: The longest TTL accepted: far beyond any cache or session, and small enough
#: that server-side arithmetic in milliseconds stays exact.
MAX_TTL_SECONDS = 100 * 365 * 86_400


def as_text(value: str | bytes) -> str:
    """``value`` as ``str``: bytes are read as UTF-8, any byte that is not
    shown as an escape (``\\xff``) rather than raising."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value


def ttl_ms(ttl: object, name: str = "ttl") -> int:
    """A time to live in seconds (int or float) as whole milliseconds; a
    ``ValueError`` naming ``name`` for anything else: bools, strings, zero,
    negative, NaN, infinite, under a millisecond or over 100 years."""
    # The range test also refuses NaN and infinities (every comparison with NaN
    # is false), without converting a huge int to float.
    if (isinstance(ttl, bool) or not isinstance(ttl, int | float)
            or not 0.001 <= ttl <= MAX_TTL_SECONDS):
        raise ValueError(f"{name} must be a positive number of seconds, from 0.001 to "
                         f"{MAX_TTL_SECONDS} (100 years), got {ttl!r}")
    return round(ttl * 1000)
