"""RQ's worker, supervised: what ``flask redis worker`` runs.

RQ's worker quits on an error it does not handle, such as Redis failing while
a job runs; the supervisor then starts a new one, after the retry policy's
delays. The first SIGTERM or SIGINT stops it within ``stop_timeout`` seconds,
whatever Redis and RQ's threads do:

- RQ's warm shutdown lets the running job finish;
- a job still running ``SIGN_OFF_SECONDS`` before the bound gets what a second
  signal gives it, RQ's cold shutdown: its work horse is killed and the job
  is left to RQ's abandoned-job handling; the worker then signs off;
- a worker that has not signed off at the bound (Redis down, or hanging with
  no read timeout, as RQ's client has none) kills the work horse if one is
  left and ends the process there, without signing off.

RQ's pub/sub thread, which listens for RQ's worker commands, never delays the
stop by more than ``PUBSUB_WAIT_SECONDS``.

Imports RQ only when a worker is made: ``flask redis`` itself runs without it."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from redis.client import PubSubWorkerThread
from redis.exceptions import RedisError

from ..connection.retry import LinearBackoff
from ..errors import describe_error
from ..state import RedisState
from .queues import make_queue, queue_connection

#: Nothing here is public API: ``flask redis worker`` is.
__all__: list[str] = []

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Seconds from the first stop signal to the end of the process, by default:
#: under the 30 s Kubernetes gives a pod between SIGTERM and SIGKILL.
DEFAULT_STOP_TIMEOUT = 25
#: The last seconds of the stop bound, kept for signing off after a cold shutdown.
SIGN_OFF_SECONDS = 5
#: The shortest stop bound: it leaves the running job 5 s, and RQ ignores a
#: second signal that comes less than 1 s after the first.
MIN_STOP_TIMEOUT = 10
#: How long RQ's pub/sub thread waits for a message at a time; it sees that it
#: is asked to stop when the wait ends.
PUBSUB_POLL_SECONDS = 1.0
#: How long signing off waits for that thread to end before leaving it behind.
PUBSUB_WAIT_SECONDS = 2.0

Say = Callable[[str], None]

#: Whether redis-py's PubSubWorkerThread.stop() waits for the thread (and
#: takes a timeout for it): redis-py 8.x does, 6.x and 7.x do not.
_STOP_WAITS = "timeout" in inspect.signature(PubSubWorkerThread.stop).parameters


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class StopAsked(BaseException):
    """A stop signal that came while RQ's own handlers were not installed
    (before its worker started, or between two). A BaseException, so that no
    ``except Exception`` on the way swallows it."""


class SupervisedWorker:
    """What the supervisor adds to RQ's ``Worker`` (see :func:`worker_class`):
    it reports the first stop signal before RQ's warm shutdown starts (which
    itself writes to Redis), and its pub/sub thread never holds up signing off.

    The pub/sub methods replace RQ's (rq >= 2.0, checked up to 3.0): rq 2.0 and
    2.1 join that thread with no timeout; rq >= 2.2 sends UNSUBSCRIBE and
    joins for 1 s a thread that waits up to 60 s for a message (with no end
    before 2.4), then closes the thread's connection from this thread while
    it may still read. Here the thread waits ``PUBSUB_POLL_SECONDS`` at a
    time and closes its own connection when it ends; one stuck in a read
    (a server that stopped answering) is left behind, a daemon thread."""

    # RQ's, set by its Worker.
    connection: Any
    log: Any
    name: str
    pubsub: Any
    pubsub_thread: Any
    pubsub_channel_name: str
    handle_payload: Callable[[dict[str, Any]], None]
    _pubsub_exception_handler: Callable[..., None]

    #: The first stop signal RQ's handler received, if any.
    stop_asked: int | None = None
    #: Told of that signal, before RQ's warm shutdown begins.
    on_stop: Callable[[int], None] | None = None

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_asked = signum
        if self.on_stop is not None:
            self.on_stop(signum)
        super().request_stop(signum, frame)  # type: ignore[misc]  # RQ's, by the MRO

    def subscribe(self) -> None:
        self.log.info("Worker %s: subscribing to channel %s", self.name,
                      self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL_SECONDS, daemon=True,
            exception_handler=self._pubsub_exception_handler)

    def unsubscribe(self) -> None:
        """Stop the pub/sub thread, waiting for it at most PUBSUB_WAIT_SECONDS;
        it ends the subscription as it closes its connection. Safe to call
        again: RQ skips it when signing off fails, so the supervisor calls it
        whatever happened."""
        thread, self.pubsub_thread = self.pubsub_thread, None
        if thread is None:
            return
        self.log.info("Worker %s: unsubscribing from channel %s", self.name,
                      self.pubsub_channel_name)
        if _STOP_WAITS:  # redis-py 8.x: stop() joins the thread, by default for ever
            thread.stop(timeout=PUBSUB_WAIT_SECONDS)
        else:
            thread.stop()
            thread.join(PUBSUB_WAIT_SECONDS)
        if thread.is_alive():
            self.log.warning("Worker %s: the pub/sub thread is still reading after %s s; "
                             "left behind", self.name, PUBSUB_WAIT_SECONDS)


@functools.cache
def worker_class() -> type[Any]:
    """RQ's ``Worker`` with :class:`SupervisedWorker`'s changes."""
    from rq import Worker

    return type("SupervisedRQWorker", (SupervisedWorker, Worker), {})


def _stop_requested() -> type[Exception]:
    """What RQ's handler raises at the first stop signal when no job runs: it
    ends RQ's work loop, or cuts RQ's sign-off short if it comes then."""
    try:
        from rq.exceptions import StopRequested
    except ImportError:  # rq < 2.6
        from rq.worker import StopRequested  # type: ignore[attr-defined,no-redef]
    stop_requested: type[Exception] = StopRequested
    return stop_requested


class StopWatchdog:
    """Keeps the stop bound, from a daemon thread of its own that
    :meth:`start` starts at the first stop signal. When the running job's
    time is up, it sends the main thread that signal again: RQ's cold
    shutdown (or :class:`StopAsked` between RQ's workers), which also ends a
    read the main thread is blocked in. At the bound, it kills the work horse
    if one is left and ends the process (``os._exit``): a stop that ends by
    itself must :meth:`cancel` it first."""

    def __init__(self, stop_timeout: float, horse_pid: Callable[[], int], say: Say) -> None:
        self.stop_timeout = stop_timeout
        self._horse_pid = horse_pid
        self._say = say
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._started = False

    def start(self, signum: int) -> None:
        """Count the bound from now. Called from a signal handler, so in the
        main thread; only the first call counts."""
        if self._started:
            return
        self._started = True
        threading.Thread(target=self._watch, args=(signum, threading.get_ident()),
                         name="flask-core-redis worker stop", daemon=True).start()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()

    def _watch(self, signum: int, main_thread: int) -> None:
        name = signal.Signals(signum).name
        job_seconds = self.stop_timeout - SIGN_OFF_SECONDS
        if not self._after(job_seconds, lambda: self._cold_shutdown(name, signum, main_thread)):
            return
        self._after(SIGN_OFF_SECONDS, lambda: self._exit(name))

    def _after(self, seconds: float, action: Callable[[], None]) -> bool:
        """Run ``action`` in ``seconds`` unless cancelled by then; whether it ran."""
        if self._cancelled.wait(seconds):
            return False
        with self._lock:
            if self._cancelled.is_set():
                return False
            action()
            return True

    def _cold_shutdown(self, name: str, signum: int, main_thread: int) -> None:
        self._say(f"the worker has not stopped {self.stop_timeout - SIGN_OFF_SECONDS:g} s "
                  f"after {name}: a cold shutdown, as on a second {name}")
        signal.pthread_kill(main_thread, signum)

    def _exit(self, name: str) -> None:
        horse = self._horse_pid()
        if horse > 0:
            _kill_if_running(horse)
        self._say(f"the worker stopped as asked ({name}); it had not signed off "
                  f"{self.stop_timeout:g} s after the signal")
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def _kill_if_running(horse: int) -> None:
    """Kill the work horse ``horse`` unless it has ended: once reaped, its pid
    may already be another process's. It leads a process group of its own,
    with whatever the job started, once it has called setpgrp (RQ's
    kill_horse kills that group); the horse itself, whether or not it has."""
    try:
        if os.waitpid(horse, os.WNOHANG) != (0, 0):
            return  # it had ended; now reaped
    except ChildProcessError:
        return
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError):
            kill(horse, signal.SIGKILL)


class WorkerSupervisor:
    """Runs RQ's worker on ``state``'s queues ``queue_names`` until asked to
    stop (SIGTERM, SIGINT) or, with ``burst``, until the queues are empty;
    starts a new one, after the retry policy's delays, when one quits on an
    error. ``say`` gets one line for each restart and one for a stop."""

    def __init__(self, state: RedisState, queue_names: Iterable[str], *, burst: bool = False,
                 stop_timeout: float = DEFAULT_STOP_TIMEOUT, say: Say = _to_stderr) -> None:
        if stop_timeout < MIN_STOP_TIMEOUT:
            raise ValueError(f"stop_timeout must be at least {MIN_STOP_TIMEOUT} s, "
                             f"not {stop_timeout}")
        self.state = state
        self.queue_names = tuple(queue_names) or ("default",)
        self.burst = burst
        self._say = say
        self._current: Any = None
        self._watchdog = StopWatchdog(stop_timeout, self._horse_pid, say)

    def run(self) -> None:
        """Work until done or stopped, in the main thread (it installs signal
        handlers, and puts back the ones it found). A stop is no error; an
        error of a burst worker is raised."""
        before = self._listen_for_stop()
        try:
            outcome = self._work_until_stopped()
        except StopAsked as asked:
            outcome = f"the worker stopped as asked ({asked})"
        finally:
            try:
                self._watchdog.cancel()
            finally:  # a worker run in-process (a test's CLI runner) leaves them as found
                for signum, handler in before.items():
                    signal.signal(signum, handler)
        if outcome:
            self._say(outcome)

    def _listen_for_stop(self) -> dict[int, Any]:
        """SIGTERM and SIGINT raise :class:`StopAsked` (RQ's worker installs
        its own handlers while it runs; those of a worker that quit are
        stale); the handlers they had before."""
        return {signum: signal.signal(signum, self._stop_asked) for signum in STOP_SIGNALS}

    def _stop_asked(self, signum: int, frame: FrameType | None) -> None:
        self._watchdog.start(signum)
        raise StopAsked(signal.Signals(signum).name)

    def _horse_pid(self) -> int:
        return int(getattr(self._current, "horse_pid", 0) or 0)

    def _new_worker(self) -> Any:
        queues = [make_queue(self.state, name) for name in self.queue_names]
        rq_worker = worker_class()(queues, connection=queue_connection(self.state))
        rq_worker.on_stop = self._watchdog.start
        self._current = rq_worker
        return rq_worker

    def _work_until_stopped(self) -> str | None:
        """The line that says why the worker stopped; None when a burst
        worker emptied its queues."""
        failures = 0
        while True:
            failures += 1
            rq_worker: Any = None
            try:
                rq_worker = self._new_worker()
                try:
                    rq_worker.work(burst=self.burst)
                finally:  # RQ's handlers, left installed, would raise StopRequested anywhere
                    self._listen_for_stop()
            except SystemExit:  # RQ's cold shutdown: a second signal, or the watchdog's
                if rq_worker is None or not rq_worker.stop_asked:
                    raise
                return _stopped(rq_worker)
            except Exception as error:  # a RedisError registering, say, or signing off
                if rq_worker is not None and rq_worker.stop_asked and isinstance(
                        error, (RedisError, _stop_requested())):
                    return _stopped(rq_worker, error)
                if self.burst or not isinstance(error, RedisError):
                    raise
                why = describe_error(error)
            else:
                if rq_worker.stop_asked:
                    return _stopped(rq_worker)
                if self.burst:
                    return None
                why = "an error (logged above)"
            finally:
                if rq_worker is not None:
                    rq_worker.unsubscribe()
            delay = LinearBackoff().compute(failures)
            self._say(f"the worker stopped on {why}; starting again in {delay * 1000:.0f} ms")
            time.sleep(delay)


def _stopped(rq_worker: Any, error: Exception | None = None) -> str:
    line = f"the worker stopped as asked ({signal.Signals(rq_worker.stop_asked).name})"
    if isinstance(error, RedisError):
        line += f"; it could not sign off: {describe_error(error)}"
    return line
