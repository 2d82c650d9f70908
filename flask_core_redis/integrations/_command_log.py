"""The Redis calls made in one context (a request), recorded for the debug
toolbar's Redis panel (:mod:`.debug_toolbar`).

:func:`install` wraps, once per process, the methods through which redis-py
clients send: ``execute_command`` of the blocking and asyncio ``Redis`` and
``RedisCluster``, ``execute`` of their pipelines, ``immediate_execute_command``
of the non-Cluster pipelines (a command sent at once while a pipeline
watches keys), and the methods of the extension's Cluster clients and asyncio
Cluster pipeline that retry redis-py's. A wrapper records only while a
:class:`CommandLog` is started in the context it runs in; otherwise it costs
one ContextVar read. Other threads and other requests run in contexts of
their own, and are not recorded; an asyncio client homed on another loop runs
each call in a copy of its caller's context, and is.

A call is recorded once, by the outermost wrapper it goes through: what runs
inside it (each try of a Cluster command or pipeline under the retry policy,
a read of the slot map, the hand-over to an asyncio client's home loop) is
part of it. An entry is one call as its caller made it, retries included,
timed from its start to its end.

What is kept is what may be shown: each command's name, its arguments that
are keys (for the commands :data:`KEYS_AT` knows), how many other arguments it
had, the SHA1 of a script it runs, and the type name of an error. Values,
replies and every other argument are never kept."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import redis.asyncio.client
import redis.asyncio.cluster
import redis.client
import redis.cluster

from ..connection.async_clients import HomedRedisCluster, RetriedClusterPipeline
from ..connection.cluster import RetryingRedisCluster


@dataclass(frozen=True)
class SentCommand:
    """One command, as it may be shown."""

    #: Its name in capitals (``GET``, ``CLIENT SETNAME``).
    name: str
    #: Its arguments that are keys, as text.
    keys: tuple[str, ...]
    #: How many other arguments it had (for a script, its ARGV).
    other_arguments: int
    #: The SHA1 of the script it runs (EVALSHA, EVAL), else None.
    script_sha: str | None


@dataclass(frozen=True)
class Call:
    """One call: a command, or the commands of a pipeline sent together."""

    #: Its commands: one, or a pipeline's.
    commands: tuple[SentCommand, ...]
    #: Whether it was a pipeline's.
    pipeline: bool
    #: How long it took, in milliseconds.
    milliseconds: float
    #: The type name of the error it raised, or those of a pipeline's error
    #: replies; empty when it succeeded.
    errors: tuple[str, ...]


#: The current context's log; None while none records, and inside a call
#: being recorded (what it calls is part of it).
_CURRENT: ContextVar[CommandLog | None] = ContextVar("flask_core_redis_command_log",
                                                     default=None)


class CommandLog:
    """The calls made in the context it is started in, until it is stopped."""

    def __init__(self) -> None:
        #: The calls, in the order they ended.
        self.calls: list[Call] = []
        self._token: Token[CommandLog | None] | None = None

    def start(self) -> None:
        """Record the calls made in this context from now on."""
        self._token = _CURRENT.set(self)

    def stop(self) -> None:
        """Stop recording, in the context it was started in; again does nothing."""
        token, self._token = self._token, None
        if token is not None:
            _CURRENT.reset(token)


_FIRST_KEY = """APPEND BITCOUNT BITPOS DECR DECRBY DUMP EXPIRE EXPIREAT EXPIRETIME GEOADD
GEODIST GEOHASH GEOPOS GEOSEARCH GET GETBIT GETDEL GETEX GETRANGE GETSET HDEL HEXISTS
HEXPIRE HGET HGETALL HINCRBY HINCRBYFLOAT HKEYS HLEN HMGET HMSET HPERSIST HRANDFIELD HSCAN
HSET HSETNX HSTRLEN HTTL HVALS INCR INCRBY INCRBYFLOAT LINDEX LINSERT LLEN LPOP LPOS LPUSH
LPUSHX LRANGE LREM LSET LTRIM PERSIST PEXPIRE PEXPIREAT PEXPIRETIME PFADD PSETEX PTTL
RESTORE RPOP RPUSH RPUSHX SADD SCARD SET SETBIT SETEX SETNX SETRANGE SISMEMBER SMEMBERS
SMISMEMBER SPOP SRANDMEMBER SREM SSCAN STRLEN TTL TYPE XACK XADD XAUTOCLAIM XCLAIM XDEL
XLEN XPENDING XRANGE XREVRANGE XTRIM ZADD ZCARD ZCOUNT ZINCRBY ZLEXCOUNT ZMSCORE ZPOPMAX
ZPOPMIN ZRANDMEMBER ZRANGE ZRANGEBYLEX ZRANGEBYSCORE ZRANK ZREM ZREMRANGEBYLEX
ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE ZREVRANK ZSCAN
ZSCORE"""

#: Where the keys are among a command's arguments (after its name), for the
#: commands known here; any other command's arguments are none of them keys.
KEYS_AT: dict[str, slice] = {
    **dict.fromkeys(_FIRST_KEY.split(), slice(0, 1)),
    **dict.fromkeys(["DEL", "EXISTS", "MGET", "PFCOUNT", "SDIFF", "SINTER", "SUNION", "TOUCH",
                     "UNLINK", "WATCH"], slice(None)),
    **dict.fromkeys(["COPY", "LMOVE", "RENAME", "RENAMENX", "RPOPLPUSH", "SMOVE"], slice(0, 2)),
    **dict.fromkeys(["MSET", "MSETNX"], slice(0, None, 2)),
    **dict.fromkeys(["BLPOP", "BRPOP", "BZPOPMAX", "BZPOPMIN"], slice(0, -1)),
}
#: Script calls: the script, the number of keys, the keys, then ARGV.
SCRIPT_CALLS = frozenset({"EVAL", "EVAL_RO", "EVALSHA", "EVALSHA_RO"})
#: Commands whose first argument is a subcommand, shown with their name.
CONTAINERS = frozenset({"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION",
                        "LATENCY", "MEMORY", "MODULE", "OBJECT", "PUBSUB", "SCRIPT",
                        "SENTINEL", "SLOWLOG", "XGROUP", "XINFO"})


def describe(args: tuple[Any, ...]) -> SentCommand:
    """The command of ``execute_command(*args)``, as it may be shown. Words
    after the first of ``args[0]`` are arguments, as redis-py sends them
    (``"CONFIG GET"``, or ``"AUTH user password"``)."""
    words = _text(args[0]).split() if args else []
    name = words[0].upper() if words else ""
    arguments = (*words[1:], *args[1:])
    if name in CONTAINERS and arguments:
        name, arguments = f"{name} {_text(arguments[0]).upper()}", arguments[1:]
    if name in SCRIPT_CALLS:
        return _script_call(name, arguments)
    keys = arguments[KEYS_AT[name]] if name in KEYS_AT else ()
    return SentCommand(name, tuple(map(_text, keys)), len(arguments) - len(keys), None)


def _script_call(name: str, arguments: tuple[Any, ...]) -> SentCommand:
    try:
        script, count = arguments[0], max(0, int(arguments[1]))
    except (IndexError, TypeError, ValueError):  # malformed: the server refuses it
        return SentCommand(name, (), len(arguments), None)
    keys = arguments[2:2 + count]
    sha = _text(script).lower() if name.startswith("EVALSHA") else _sha1(script)
    return SentCommand(name, tuple(map(_text, keys)), len(arguments) - 2 - len(keys), sha)


def _text(argument: Any) -> str:
    """An argument as text; bytes that are not UTF-8 as ``\\x`` escapes."""
    if isinstance(argument, bytes | bytearray | memoryview):
        return bytes(argument).decode("utf-8", "backslashreplace")
    return str(argument)


def _sha1(source: Any) -> str:
    """The SHA1 of a script's source, as the server computes it."""
    if not isinstance(source, bytes | bytearray | memoryview):
        source = str(source).encode()
    return hashlib.sha1(source).hexdigest()


def _stacked_commands(pipe: Any) -> list[tuple[Any, ...]]:
    """The arguments of each command ``pipe`` holds: a pipeline's
    ``command_stack``; a Cluster pipeline's, blocking or asyncio, from its
    execution strategy's private ``_command_queue`` (redis-py: all)."""
    strategy = getattr(pipe, "_execution_strategy", None)
    if strategy is None:
        return [args for args, _options in pipe.command_stack]
    return [command.args for command in strategy._command_queue]


class _Pending:
    """A call under way, added to its log when it ends."""

    def __init__(self, log: CommandLog, commands: tuple[SentCommand, ...],
                 pipeline: bool) -> None:
        self._log, self._commands, self._pipeline = log, commands, pipeline
        self._started = time.perf_counter()

    def ended(self, outcome: Any) -> Any:
        """Add the call that returned ``outcome``; return it."""
        replies = outcome if self._pipeline and isinstance(outcome, list) else []
        self._add(tuple(type(reply).__name__ for reply in replies
                        if isinstance(reply, BaseException)))
        return outcome

    def failed(self, error: BaseException) -> None:
        """Add the call that raised ``error``."""
        self._add((type(error).__name__,))

    def _add(self, errors: tuple[str, ...]) -> None:
        milliseconds = (time.perf_counter() - self._started) * 1000
        self._log.calls.append(Call(self._commands, self._pipeline, milliseconds, errors))


@contextlib.contextmanager
def _recording(log: CommandLog, commands: tuple[SentCommand, ...],
               pipeline: bool) -> Iterator[_Pending]:
    pending = _Pending(log, commands, pipeline)
    token = _CURRENT.set(None)  # what the call runs is part of it
    try:
        yield pending
    except BaseException as error:
        pending.failed(error)
        raise
    finally:
        _CURRENT.reset(token)


def _recorded(original: Callable[..., Any], pipeline: bool) -> Callable[..., Any]:
    """``original`` (an ``execute_command`` or a pipeline's ``execute``, plain
    or a coroutine function), recording its calls in the current log."""
    def commands(owner: Any, args: tuple[Any, ...]) -> tuple[SentCommand, ...]:
        # Read before the call: a pipeline empties itself as it executes.
        return (tuple(map(describe, _stacked_commands(owner))) if pipeline
                else (describe(args),))

    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def recorded_async(self: Any, *args: Any, **options: Any) -> Any:
            log = _CURRENT.get()
            if log is None:
                return await original(self, *args, **options)
            with _recording(log, commands(self, args), pipeline) as call:
                return call.ended(await original(self, *args, **options))

        return recorded_async

    @functools.wraps(original)
    def recorded(self: Any, *args: Any, **options: Any) -> Any:
        log = _CURRENT.get()
        if log is None:
            return original(self, *args, **options)
        with _recording(log, commands(self, args), pipeline) as call:
            return call.ended(original(self, *args, **options))

    return recorded


#: The methods recorded: each class that defines it, its name, and whether
#: it executes a pipeline.
RECORDED: tuple[tuple[type, str, bool], ...] = (
    (redis.client.Redis, "execute_command", False),
    (redis.client.Pipeline, "immediate_execute_command", False),
    (redis.client.Pipeline, "execute", True),
    (redis.cluster.RedisCluster, "execute_command", False),
    (redis.cluster.ClusterPipeline, "execute", True),
    (RetryingRedisCluster, "execute_command", False),
    (redis.asyncio.client.Redis, "execute_command", False),
    (redis.asyncio.client.Pipeline, "immediate_execute_command", False),
    (redis.asyncio.client.Pipeline, "execute", True),
    (redis.asyncio.cluster.RedisCluster, "execute_command", False),
    (redis.asyncio.cluster.ClusterPipeline, "execute", True),
    (HomedRedisCluster, "execute_command", False),
    (RetriedClusterPipeline, "execute", True),
)

_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Wrap the methods of :data:`RECORDED`, once per process."""
    global _installed
    with _install_lock:
        if not _installed:
            for owner, name, pipeline in RECORDED:
                setattr(owner, name, _recorded(vars(owner)[name], pipeline))
            _installed = True
