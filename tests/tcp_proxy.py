"""A TCP proxy for tests that lose a reply: it sits between a client and a real
server and, when told to, holds back the server's reply to one request, after
the server has run it, until the client gives up and hangs up. To the client
that is a reply delayed past its socket timeout; to the server, a command that
ran."""

from __future__ import annotations

import contextlib
import socket
import threading
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


class ReplyLosingProxy:
    """Listens on ``port`` (loopback) and forwards to ``target_port``.

    ``lose_reply_to(marker)`` arms it once: the next request whose bytes contain
    ``marker`` reaches the server, and its reply never reaches the client.
    ``replies_lost`` counts the replies held back until the client hung up."""

    def __init__(self, target_port: int) -> None:
        self.target = (LOOPBACK, target_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._links: list[_Link] = []
        self.replies_lost = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> ReplyLosingProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def lose_reply_to(self, marker: str | bytes) -> None:
        with self._lock:
            self._marker = marker.encode() if isinstance(marker, str) else marker

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            link = _Link(client, socket.create_connection(self.target))
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._requests, args=(link,), daemon=True).start()
            threading.Thread(target=self._replies, args=(link,), daemon=True).start()

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
        """Server to client; a held reply is dropped once the client hangs up."""
        try:
            while chunk := link.server.recv(CHUNK):
                if link.hold_reply:
                    if link.client_gone.wait(HOLD_LIMIT_SECONDS):
                        with self._lock:
                            self.replies_lost += 1
                    break
                link.client.sendall(chunk)
        except OSError:
            pass  # either end went away
        finally:
            link.close()
