"""Flask-DebugToolbar's Redis panel: the Redis calls the current request
made, through any redis-py client of the process (the extension's, blocking
or asyncio, on one server, Sentinel or Cluster, and any other). Add
``"flask_core_redis.integrations.debug_toolbar.RedisPanel"`` to
``DEBUG_TB_PANELS``.

Needs Flask-DebugToolbar: ``pip install flask-debugtoolbar``; without it,
importing this module raises a ConfigurationError that says so.

Each call is one row: its command's name (a script's name for EVALSHA and
EVAL, found by ``flask_core_redis.plugin_api.lua.script_name``), its keys
(shortened to ``MAX_KEY_CHARS``), how many other arguments it had, its time
in milliseconds, and the type name of an error it met. A pipeline is one row
naming its commands, timed for its whole round trip. A call retried by the
extension's Cluster clients is one row, its retries included; on one server
and Sentinel redis-py retries inside the call, so there too. Values, replies
and every argument that is not a key (but a subcommand's name, and the SHA1
that names a script) are never recorded nor shown. The toolbar shows the
calls made before it renders, in its own ``after_request``. (Flask-DebugToolbar
runs no ``async def`` view: pallets-eco/flask-debugtoolbar#158; asyncio
clients called otherwise are shown.)

Nothing is recorded until the toolbar loads the panel (``init_app``): it
then wraps redis-py's methods that send (``_command_log``), once per
process, and from then on every call pays one ContextVar read; a request
records only while its toolbar's panel runs, and sees no other thread's or
request's calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flask
import jinja2
from flask import Flask
from werkzeug import Request, Response

from ..plugin_api.lua import script_name
from ._command_log import Call, CommandLog, SentCommand, install
from ._missing import missing_library

try:
    from flask_debugtoolbar.panels import DebugPanel
except ImportError as error:
    raise missing_library(__name__, "Flask-DebugToolbar", "flask-debugtoolbar") from error

__all__ = ["MAX_KEY_CHARS", "RedisPanel"]

#: The most characters a key is shown with: a longer one shows its start and
#: its end, with ``…`` between.
MAX_KEY_CHARS = 40

#: Where a request's log waits for the request's teardown, in its WSGI environ.
_LOG_KEY = "flask_core_redis.command_log"

_TEMPLATE = jinja2.Environment(autoescape=True).from_string("""\
{% if rows %}
<table>
  <thead>
    <tr><th>#</th><th>Command</th><th>Keys</th><th>Other arguments</th>
        <th>Time (ms)</th><th>Error</th></tr>
  </thead>
  <tbody>
  {% for row in rows %}
    <tr class="{{ loop.cycle('flDebugOdd', 'flDebugEven') }}">
      <td>{{ loop.index }}</td>
      <td>{{ row.command }}</td>
      <td>{% for key in row.keys %}<code>{{ key }}</code> {% endfor %}</td>
      <td>{{ row.other_arguments }}</td>
      <td>{{ row.milliseconds }}</td>
      <td>{{ row.errors }}</td>
    </tr>
  {% endfor %}
  </tbody>
</table>
{% else %}
<p>No Redis commands were sent.</p>
{% endif %}
""")


class RedisPanel(DebugPanel):
    """The Redis calls of the current request: command names, keys, timing."""

    #: The panel's name; its element's id is ``flDebugRedisPanel``.
    name = "Redis"
    #: It has a table to show.
    has_content = True

    @classmethod
    def init_app(cls, app: Flask) -> None:
        """Wrap redis-py's sending methods (once per process) and end each
        request's recording at its teardown, however the request ended."""
        install()
        app.teardown_request(_stop_recording)

    def __init__(self, jinja_env: jinja2.Environment,
                 context: dict[str, Any] | None = None) -> None:
        super().__init__(jinja_env, context)
        self._log = CommandLog()

    def process_request(self, request: Request) -> None:
        """Start recording the calls of this request."""
        request.environ[_LOG_KEY] = self._log
        self._log.start()

    def process_response(self, request: Request, response: Response) -> None:
        """Stop recording: the toolbar renders next."""
        self._log.stop()

    def nav_title(self) -> str:
        """The panel's name in the toolbar."""
        return "Redis"

    def nav_subtitle(self) -> str:
        """How many commands the request sent, and their time."""
        count = sum(len(call.commands) for call in self._log.calls)
        milliseconds = sum(call.milliseconds for call in self._log.calls)
        return f"{count} {'command' if count == 1 else 'commands'} in {milliseconds:.2f} ms"

    def title(self) -> str:
        """The panel's title."""
        return "Redis commands"

    def url(self) -> str:
        """Empty: the panel's content comes with the toolbar."""
        return ""

    def content(self) -> str:
        """The calls, one row each, HTML-escaped."""
        return _TEMPLATE.render(rows=[_Row.of(call) for call in self._log.calls])


def _stop_recording(error: BaseException | None) -> None:
    log = flask.request.environ.pop(_LOG_KEY, None)
    if log is not None:
        log.stop()


@dataclass(frozen=True)
class _Row:
    """One call, as text to show."""

    command: str
    keys: tuple[str, ...]
    other_arguments: str
    milliseconds: str
    errors: str

    @classmethod
    def of(cls, call: Call) -> _Row:
        errors = ", ".join(call.errors)
        milliseconds = f"{call.milliseconds:.2f}"
        if call.pipeline:
            names = ", ".join(map(_command_name, call.commands))
            return cls(f"pipeline of {len(call.commands)}: {names}", (), "", milliseconds,
                       errors)
        command, = call.commands
        return cls(_command_name(command), tuple(map(_shown_key, command.keys)),
                   str(command.other_arguments), milliseconds, errors)


def _command_name(command: SentCommand) -> str:
    """The command's name; a script's, after EVALSHA or EVAL."""
    if command.script_sha is None:
        return _printable(command.name)
    name = script_name(command.script_sha) or f"script {command.script_sha[:8]}"
    return _printable(f"{command.name} {name}")


def _printable(text: str) -> str:
    """``text`` with each character that does not print as its escape."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode()
                   for char in text)


def _shown_key(key: str) -> str:
    """``key`` as the panel shows it: :func:`_printable`, in at most
    ``MAX_KEY_CHARS`` characters, its start and end around ``…``."""
    printable = _printable(key)
    if len(printable) <= MAX_KEY_CHARS:
        return printable
    head = MAX_KEY_CHARS // 2
    return f"{printable[:head]}…{printable[len(printable) - (MAX_KEY_CHARS - head - 1):]}"
