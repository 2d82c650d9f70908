"""Exceptions raised by flask-core-redis."""

from __future__ import annotations


class ConfigurationError(ValueError):
    """A configuration value is missing, malformed or out of range.

    Raised by ``init_app`` so that a misconfigured app fails at start-up, not on
    its first request. The message names the key, the offending value (with any
    secret masked) and what would be accepted.
    """
