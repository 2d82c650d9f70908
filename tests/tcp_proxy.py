"""A TCP proxy between clients and a real server, for network faults that a
server alone cannot show:

- a lost reply: told to, it holds back the server's reply to one request,
  after the server has run it, until the client gives up and hangs up. To the
  client that is a reply delayed past its socket timeout; to the server, a
  command that ran;
- latency: every reply waits ``latency`` seconds before it is passed on;
- a dropped connection: every open connection is cut at once, both ends.

It listens on a loopback port of its own (or one it is given, so that it can
outlive a restart of the server behind it); a client it cannot connect
through is hung up on at once, as a refused connect would be."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

from .servers import LOOPBACK

CHUNK = 65536
#: How long a held reply waits for the client to hang up before the proxy
#: gives up on the connection anyway (a client with no socket timeout).
HOLD_LIMIT_SECONDS = 30.0


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.hold_reply = False
        self.client_gone = threading.Event()

    def close(self) -> None:
        for end in (self.client, self.server):
            with contextlib.suppress(OSError):  # already closed by the other side
                end.shutdown(socket.SHUT_RDWR)
            end.close()


class FaultProxy:
    """Listens on ``port`` (loopback; 0: any free one) and forwards to
    ``target_port``.

    ``lose_reply_to(marker)`` arms it once: the next request whose bytes contain
    ``marker`` reaches the server, and its reply never reaches the client.
    ``replies_lost`` counts the replies held back until the client hung up.
    ``latency`` (seconds, default 0) delays every reply; ``drop_connections()``
    cuts every open connection."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target = (LOOPBACK, target_port)
        self._listener = socket.create_server((LOOPBACK, port))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._links: list[_Link] = []
        self.replies_lost = 0
        self.latency = 0.0
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def lose_reply_to(self, marker: str | bytes) -> None:
        with self._lock:
            self._marker = marker.encode() if isinstance(marker, str) else marker

    def drop_connections(self) -> int:
        """Cut every open connection; how many there were."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        return len(links)

    def close(self) -> None:
        self._listener.close()
        self.drop_connections()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:  # the server is down: so is the proxy, to the client
                client.close()
                continue
            server.settimeout(None)
            link = _Link(client, server)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._requests, args=(link,), daemon=True).start()
            threading.Thread(target=self._replies, args=(link,), daemon=True).start()

    def _forget(self, link: _Link) -> None:
        with self._lock, contextlib.suppress(ValueError):  # dropped already
            self._links.remove(link)
        link.close()

    def _requests(self, link: _Link) -> None:
        """Client to server; arms the link whose request carries the marker."""
        try:
            while chunk := link.client.recv(CHUNK):
                with self._lock:
                    if self._marker is not None and self._marker in chunk:
                        self._marker = None
                        link.hold_reply = True
                link.server.sendall(chunk)
        except OSError:
            pass  # either end went away
        finally:
            link.client_gone.set()

    def _replies(self, link: _Link) -> None:
        """Server to client, after ``latency``; a held reply is dropped once
        the client hangs up."""
        try:
            while chunk := link.server.recv(CHUNK):
                if link.hold_reply:
                    if link.client_gone.wait(HOLD_LIMIT_SECONDS):
                        with self._lock:
                            self.replies_lost += 1
                    break
                if self.latency:
                    time.sleep(self.latency)
                link.client.sendall(chunk)
        except OSError:
            pass  # either end went away
        finally:
            self._forget(link)
