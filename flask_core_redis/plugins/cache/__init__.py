"""The built-in ``cache`` plugin: JSON values in namespaces, stampede
protection, fail-open reads, and the ``cached`` decorator."""

from .plugin import CONFIG_KEYS, CachePlugin

__all__ = ["CONFIG_KEYS", "CachePlugin"]
