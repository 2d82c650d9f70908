"""The error an integration raises when its third-party library is not
installed."""

from __future__ import annotations

from ..errors import ConfigurationError


def missing_library(module: str, library: str, install: str) -> ConfigurationError:
    """A ConfigurationError saying that ``module`` needs ``library``, and the
    ``pip install`` arguments (``install``) that install it."""
    return ConfigurationError(
        f"{library} is not installed, and {module} needs it: pip install {install}")
