"""Per-app state: what one ``CoreRedis`` registration keeps for one app, kept
in ``app.extensions["core_redis"][config_prefix]``, and the lifecycle of
every client it opens. One module per concern:

- ``registry``: the client registry (:class:`RedisState`: settings, events,
  plugins, clients by kind) and the registrations of each app by prefix;
- ``unit_of_work``: closing what a request or CLI command left open;
- ``health``: the health check, bounded in time;
- ``lifecycle``: the exit hook that closes what is still open.

Lifecycle, in one place:

- The shared client is built on first use (``init_app`` does no network I/O)
  and lives until :meth:`RedisState.close` (``ext.close()``) or process exit.
  Requests never open or close it.
- ``duplicate()`` and ``subscribe()`` made by the app inside a request are
  closed when the response has been sent (so a streamed response can read a
  subscription its view made), or at the request's teardown if it ended
  without a response; inside a CLI command, when the command ends. Made
  anywhere else (at start-up, in a background thread), they live until
  ``ext.close()`` or process exit. Only weak references are kept: one the app
  drops is closed by garbage collection.
- Clients an integration builds for itself (RQ's) live like the shared one.
- At process exit every registration still open is closed."""

from .registry import (
    RedisState,
    Registration,
    app_state,
    current_state,
    register,
    registered_states,
)

__all__ = ["RedisState", "Registration", "app_state", "current_state", "register",
           "registered_states"]
