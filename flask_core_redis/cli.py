"""``flask redis ...``: look at and manage the app's Redis from a shell.

Every failure exits non-zero with one readable line, never a traceback, and no
output ever shows a password."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from flask.cli import ScriptInfo
from redis.cluster import RedisCluster

from .connection import AnyClient
from .errors import describe_error
from .integrations.worker import (
    DEFAULT_STOP_TIMEOUT,
    MIN_STOP_TIMEOUT,
    SIGN_OFF_SECONDS,
    WorkerSupervisor,
)
from .key_text import key_to_text, text_to_key
from .state import RedisState, registered_states
from .state.apps import current_app_object, has_app_context, is_quart
from .values import as_text

PREFIX_KEY = "flask_core_redis.prefix"

PLUGIN_GROUPS_KEY = "flask_core_redis.plugin_groups"


def _plugin_commands(ctx: click.Context, state: RedisState) -> click.Group:
    """The subcommands ``state``'s plugins add under ``flask redis``, built once
    per command line (kept in its context's meta, which dies with it: a group
    holds the plugins, which hold the registration)."""
    groups: dict[str, click.Group] = ctx.meta.setdefault(PLUGIN_GROUPS_KEY, {})
    group = groups.get(state.settings.prefix)
    if group is None:
        group = CommandsInAppContext("plugins")
        state.plugins.add_commands(group)
        groups[state.settings.prefix] = group
    return group


def with_app_context(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``command`` in the app's context, as Flask's ``with_appcontext``
    does, under ``flask`` and under ``quart`` alike: Quart's app context is
    its own, entered in an event loop made for the command."""

    @click.pass_context
    def in_app_context(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            return ctx.invoke(command, *args, **kwargs)
        app = _load_app(ctx)
        if not is_quart(app):
            with app.app_context():
                return ctx.invoke(command, *args, **kwargs)

        async def in_quart_app_context() -> Any:
            async with app.app_context():
                return ctx.invoke(command, *args, **kwargs)

        return asyncio.run(in_quart_app_context())

    return functools.update_wrapper(in_app_context, command)


def _script_info(ctx: click.Context) -> Any:
    """The command line's ScriptInfo, Flask's or Quart's (which finds the app
    its own way); None outside either CLI."""
    quart_cli = sys.modules.get("quart.cli")
    if quart_cli is not None:
        info = ctx.find_object(quart_cli.ScriptInfo)
        if info is not None:
            return info
    return ctx.find_object(ScriptInfo)


def _load_app(ctx: click.Context) -> Any:
    info = _script_info(ctx) or ctx.ensure_object(ScriptInfo)
    return info.load_app()


class CommandsInAppContext(click.Group):
    """A group whose commands run in the app's context, under Flask's CLI or
    Quart's (:func:`with_app_context`); its subgroups too."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:  # type: ignore[override]
        def decorator(function: Callable[..., Any]) -> click.Command:
            made: click.Command = click.Group.command(self, *args, **kwargs)(
                with_app_context(function))
            return made

        return decorator

    def group(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", CommandsInAppContext)
        return super().group(*args, **kwargs)


class RedisCommandGroup(CommandsInAppContext):
    """``flask redis`` (``quart redis``): built-in commands plus the ones the
    app's plugins add. Any failure ends as one line and exit code 1, never a
    traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            raise click.ClickException(describe_error(error)) from None

    def _plugin_group(self, ctx: click.Context) -> click.Group | None:
        info = _script_info(ctx)
        if info is None:
            return None
        try:
            app = info.load_app()
        except Exception:  # no app found: only the built-in commands exist
            return None
        state = registered_states(app).get(ctx.params.get("prefix") or "REDIS")
        return _plugin_commands(ctx, state) if state else None

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugin_group = self._plugin_group(ctx)
        extra = plugin_group.list_commands(ctx) if plugin_group else []
        return sorted({*super().list_commands(ctx), *extra})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            plugin_group = self._plugin_group(ctx)
            command = plugin_group.get_command(ctx, cmd_name) if plugin_group else None
        return command


@click.group("redis", cls=RedisCommandGroup)
@click.option("--prefix", default="REDIS", show_default=True,
              help="Config prefix of the CoreRedis registration to use.")
@click.pass_context
def redis_group(ctx: click.Context, prefix: str) -> None:
    """Inspect and manage the app's Redis."""
    ctx.meta[PREFIX_KEY] = prefix


def _bytes_client() -> AnyClient:
    """A client of the command's registration that returns bytes whatever
    DECODE_RESPONSES says, so that binary keys and values print (escaped)
    instead of failing to decode."""
    return _state().decoding_client(False)


def _state() -> RedisState:
    prefix = click.get_current_context().meta.get(PREFIX_KEY, "REDIS")
    app = current_app_object()
    states = registered_states(app) if app is not None else {}
    if prefix not in states:
        known = ", ".join(states) or "none"
        raise click.ClickException(
            f"no CoreRedis registration with prefix {prefix!r} on this app "
            f"(registered: {known}); call CoreRedis.init_app(app) in the app factory")
    return states[prefix]


@redis_group.command()
def ping() -> None:
    """Send PING and print the reply with its latency."""
    client = _state().client
    started = time.perf_counter()
    client.ping()
    click.echo(f"PONG ({(time.perf_counter() - started) * 1000:.2f} ms)")


@redis_group.command()
@click.argument("section", required=False)
def info(section: str | None) -> None:
    """Print INFO, or one SECTION of it (e.g. memory); per master in Cluster."""
    client = _state().client
    if isinstance(client, RedisCluster):
        # Typed Any: redis-py 6.x annotates every reply as possibly awaitable.
        replies: Any = client.info(section, target_nodes=RedisCluster.PRIMARIES)
        for node, reply in replies.items():
            click.echo(f"# {node}")
            _echo_mapping(reply)
        return
    info: Any = client.info(section) if section else client.info()
    _echo_mapping(info)


def _echo_mapping(mapping: dict[str, Any]) -> None:
    for name, value in mapping.items():
        click.echo(f"{name}: {value}")


@redis_group.command()
def config() -> None:
    """Print the effective settings, secrets masked."""
    _echo_mapping(_state().settings.describe())


@redis_group.command()
@click.argument("pattern", default="*")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1),
              help="Print at most this many keys.")
def keys(pattern: str, limit: int) -> None:
    """List keys matching PATTERN with SCAN (every master in Cluster), never KEYS."""
    client = _bytes_client()
    found = client.scan_iter(match=pattern, count=max(limit, 100))
    for key in itertools.islice(found, limit):
        click.echo(key_to_text(key))


@redis_group.command()
@click.argument("key")
def get(key: str) -> None:
    """Print the string value of KEY (as `keys` prints it), or (nil)."""
    value: Any = _bytes_client().get(text_to_key(key))
    click.echo("(nil)" if value is None else as_text(value))


@redis_group.command()
@click.argument("key")
def ttl(key: str) -> None:
    """Print the seconds KEY (as `keys` prints it) has left to live."""
    seconds: Any = _state().client.ttl(text_to_key(key))
    meaning = {-1: " (no expiry)", -2: " (no such key)"}.get(seconds, "")
    click.echo(f"{seconds}{meaning}")


@redis_group.command("del")
@click.argument("keys", nargs=-1, required=True)
def delete(keys: tuple[str, ...]) -> None:
    """Delete KEYS (as `keys` prints them) and print how many existed."""
    click.echo(str(_state().client.delete(*map(text_to_key, keys))))


@redis_group.command()
@click.option("--yes", is_flag=True, help="Confirm: this deletes every key in the db.")
def flush(yes: bool) -> None:
    """Delete every key of the configured database (FLUSHDB, never FLUSHALL)."""
    state = _state()
    if not yes:
        raise click.ClickException(
            f"refusing to flush db {state.settings.db} at {state.settings.address} "
            "without --yes")
    client = state.client
    if isinstance(client, RedisCluster):
        client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    else:
        client.flushdb()
    click.echo(f"flushed db {state.settings.db} at {state.settings.address}")


@redis_group.command()
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="Stop once the queues are empty.")
@click.option("--stop-timeout", type=click.IntRange(min=MIN_STOP_TIMEOUT),
              default=DEFAULT_STOP_TIMEOUT, show_default=True, metavar="SECONDS",
              help="Exit at most this long after the first SIGTERM or SIGINT; a job "
                   f"still running {SIGN_OFF_SECONDS} s before gets RQ's cold shutdown.")
def worker(queues: tuple[str, ...], burst: bool, stop_timeout: int) -> None:
    """Run an RQ worker on QUEUES (default: default); jobs see the app context.

    RQ's worker quits on an error it does not handle, such as Redis failing
    over while a job runs; this one then starts again, after the retry
    policy's delays, until it is asked to stop. The first SIGTERM or SIGINT
    lets the running job finish if it can, and stops the worker within
    --stop-timeout seconds, whether RQ's worker is running or not, and
    whatever Redis does."""
    state = _state()
    if state.settings.mode == "memory":
        raise click.ClickException("in memory mode jobs run when they are enqueued; "
                                   "there is nothing for a worker to do")
    WorkerSupervisor(state, queues, burst=burst, stop_timeout=stop_timeout,
                     say=functools.partial(click.echo, err=True)).run()


@redis_group.command()
def plugins() -> None:
    """List the enabled plugins in hook order: name, version, distribution, hooks."""
    for record in _state().plugins:
        hooks = ", ".join(hook.removeprefix("core_redis_") for hook in record.hooks)
        click.echo(f"{record.name} {record.version} [{record.origin}] hooks: {hooks}")


@redis_group.command()
def health() -> None:
    """Print the health report as JSON; exit 1 when not ok."""
    report = _state().health()
    click.echo(json.dumps(report, indent=2, default=str))
    if not report["ok"]:
        raise SystemExit(1)
