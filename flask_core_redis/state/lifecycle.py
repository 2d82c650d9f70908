"""Exit hooks: at process exit, every registration still open is closed."""

from __future__ import annotations

import atexit
import weakref

from .unit_of_work import Closeable

_open: weakref.WeakSet[Closeable] = weakref.WeakSet()


def close_at_exit(resource: Closeable) -> None:
    """Close ``resource`` at process exit if it is still alive then; only a
    weak reference is kept."""
    _open.add(resource)


@atexit.register
def _close_all_at_exit() -> None:
    for resource in list(_open):
        resource.close()
