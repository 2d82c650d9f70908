"""Flask-Session's Redis sessions on the app's bytes client, in every mode:
``app.session_interface = session_interface(ext, app)``.

Needs Flask-Session: ``pip install Flask-Session``; without it, importing
this module raises a ConfigurationError that says so.

Flask-Session's own setup (``SESSION_TYPE="redis"``) accepts only a
``redis.Redis`` in ``SESSION_REDIS``; given anything else, a Cluster client
included, or nothing, it warns and stores sessions on ``localhost:6379``. The
interface here takes the client from the registration on each use instead,
so there is nothing to fall back from: no ``Redis()`` is ever built. Session
keys start with ``KEY_PREFIX``, then Flask-Session's ``SESSION_KEY_PREFIX``."""

from __future__ import annotations

from flask import Flask

from ..connection import AnyClient
from ..state import Registration, app_state
from ._missing import missing_library

try:
    from flask_session.base import ServerSideSessionInterface
    from flask_session.defaults import Defaults
    from flask_session.redis import RedisSessionInterface
except ImportError as error:
    raise missing_library(__name__, "Flask-Session", "Flask-Session") from error

__all__ = ["CoreRedisSessionInterface", "session_interface"]

#: Flask-Session's own keys this interface reads, with their arguments.
_OPTIONS = {
    "SESSION_KEY_PREFIX": "key_prefix",
    "SESSION_PERMANENT": "permanent",
    "SESSION_USE_SIGNER": "use_signer",
    "SESSION_ID_LENGTH": "sid_length",
    "SESSION_SERIALIZATION_FORMAT": "serialization_format",
}


class CoreRedisSessionInterface(RedisSessionInterface):  # type: ignore[misc]
    """Flask-Session's ``RedisSessionInterface`` whose client is the app's
    bytes client (``ext.get_client(decode_responses=False)``), looked up on
    each use: it follows ``ext.close()`` and needs no client at start-up.
    ``app`` must have ``ext`` registered (``init_app`` first); its
    ``SESSION_*`` keys are read as Flask-Session reads them."""

    def __init__(self, ext: Registration, app: Flask) -> None:
        self._state = app_state(app, ext.config_prefix)
        options = {argument: app.config.get(key, getattr(Defaults, key))
                   for key, argument in _OPTIONS.items()}
        # The app's REDIS_KEY_PREFIX first, as for every key this project writes.
        options["key_prefix"] = self._state.settings.key_prefix + options["key_prefix"]
        # RedisSessionInterface.__init__ only picks the client, which the
        # property below does; the rest is the base class's.
        ServerSideSessionInterface.__init__(self, app, **options)

    @property
    def client(self) -> AnyClient:
        """The app's bytes client, as it is now."""
        return self._state.decoding_client(False)


def session_interface(ext: Registration, app: Flask) -> CoreRedisSessionInterface:
    """Server-side sessions for ``app`` on the Redis of ``ext`` (a
    :class:`~flask_core_redis.CoreRedis` registered on ``app``): assign it to
    ``app.session_interface`` instead of calling ``Session(app)``."""
    return CoreRedisSessionInterface(ext, app)
