"""HTTP load for the async figures: an HTTP/1.1 load generator on asyncio
streams, and the servers it drives (uvicorn in a subprocess of a given
Python, uvicorn or werkzeug's threaded server in a thread of this process).

The load generator opens ``connections`` connections and sends ``GET path``
on each until ``requests`` requests have been answered, one at a time per
connection: keep-alive where the server keeps the connection open, a new
connection where it closes it (werkzeug's server speaks HTTP/1.0) or where
the load asks it to (``keep_alive=False``)."""

from __future__ import annotations

import asyncio
import http.client
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import free_port, wait_until

from .topologies import PINNING, SERVER_CPU

HOST = "127.0.0.1"
REPO = Path(__file__).absolute().parent.parent
#: Seconds one response may take before the load counts it as failed.
RESPONSE_SECONDS = 30.0


@dataclass
class Load:
    """What one load run got: its answers, time and failures."""

    requests: int
    seconds: float
    failures: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


class _Budget:
    """The requests left to send, shared by the connections of one run."""

    def __init__(self, requests: int) -> None:
        self.left = requests

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def drive(port: int, path: str, requests: int, connections: int, keep_alive: bool = True
          ) -> Load:
    """``requests`` GETs of ``path`` over ``connections`` concurrent
    connections; without ``keep_alive``, each request asks the server to close
    its connection after the response, and the next one opens another."""
    return asyncio.run(_drive(port, path, requests, connections, keep_alive))


async def _drive(port: int, path: str, requests: int, connections: int, keep_alive: bool
                 ) -> Load:
    budget, failures = _Budget(requests), list[str]()
    close = "" if keep_alive else "Connection: close\r\n"
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{close}\r\n".encode()
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, budget, failures)
                           for _ in range(connections)))
    return Load(requests, time.perf_counter() - started, failures)


async def _connection(port: int, request: bytes, budget: _Budget, failures: list[str]) -> None:
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while budget.take():
            if streams is None:
                streams = await asyncio.open_connection(HOST, port)
            reader, writer = streams
            writer.write(request)
            try:
                status, keep = await asyncio.wait_for(_response(reader), RESPONSE_SECONDS)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as error:
                status, keep = f"{type(error).__name__}: {error}", False
            if status != "200":
                failures.append(status)
            if not keep:
                await _close(streams[1])
                streams = None
    finally:
        if streams is not None:
            await _close(streams[1])


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with suppress(OSError):
        await writer.wait_closed()


async def _response(reader: asyncio.StreamReader) -> tuple[str, bool]:
    """Read one response: its status code and whether the connection stays open."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    version, status = head[0].split(" ", 2)[:2]
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in head[1:] if line)}
    connection = headers.get("connection", "").lower()
    keep = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        await _chunks(reader)
    else:  # the body ends with the connection
        await reader.read()
        keep = False
    return status, keep


async def _chunks(reader: asyncio.StreamReader) -> None:
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        await reader.readexactly(size + 2)
    await reader.readuntil(b"\r\n")


def answers(port: int, path: str) -> bool:
    """Whether ``GET path`` answers 200 now."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


# Servers -------------------------------------------------------------------

@dataclass
class ServerProcess:
    """A server in a process of its own: where it listens, and its CPU time."""

    port: int
    pid: int

    def cpu_seconds(self) -> float:
        """User and system time the process has used (Linux's /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def uvicorn_process(python: str | Path, factory: str, environment: dict[str, str],
                    ready_path: str, path: tuple[Path, ...] = ()) -> Iterator[ServerProcess]:
    """uvicorn serving ``factory()`` (``module:function``) with ``python``
    (the checkout and ``path`` before its packages), one worker, the asyncio
    loop and h11, no access log; on the server CPU when the run is pinned.
    Yielded once ``ready_path`` answers 200."""
    port = free_port()
    command = [str(python), "-m", "uvicorn", "--factory", factory, "--host", HOST,
               "--port", str(port), "--workers", "1", "--loop", "asyncio", "--http", "h11",
               "--lifespan", "on", "--no-access-log", "--log-level", "warning"]
    if PINNING.active:
        command = ["taskset", "-c", str(SERVER_CPU), *command]
    search = os.pathsep.join(str(folder) for folder in (REPO, *path))
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **environment,
                                                      "PYTHONPATH": search})
    try:
        wait_until(lambda: process.poll() is not None or answers(port, ready_path), 60,
                   f"uvicorn serving {factory}")
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn serving {factory} exited with {process.returncode}")
        yield ServerProcess(port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def uvicorn_thread(app: Any) -> Iterator[int]:
    """uvicorn serving ``app`` (ASGI) in a thread of this process, lifespan
    included; yields its port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning",
                                           lifespan="auto", access_log=False,
                                           loop="asyncio", http="h11"))
    thread = threading.Thread(target=server.run, name="bench uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 20, "uvicorn to start")
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield port
    finally:
        server.should_exit = True
        thread.join(20)


@contextmanager
def werkzeug_thread(app: Any) -> Iterator[int]:
    """werkzeug's threaded WSGI server (``flask run``'s) serving ``app`` in a
    thread of this process; yields its port."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """No line per request: the load would print thousands."""

    server = make_server(HOST, free_port(), app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, name="bench werkzeug",
                              daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(20)
