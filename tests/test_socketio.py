"""Socket.IO across processes: two example-app servers share one Redis; a
client of server B receives what server A emits."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import socketio
from flask import Flask

from .servers import free_port, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "socketio-test-secret"


class Server:
    """`flask --app example_app run` on a free port, as a real process."""

    def __init__(self, url, workdir, **settings):
        self.port = free_port()
        self.log = open(workdir / f"server-{self.port}.log", "w")  # noqa: SIM115
        environment = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(ROOT),
                       "SECRET_KEY": SECRET_KEY, "REDIS_CONNECT_TIMEOUT": "500", **settings}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "example_app", "run", "--port",
             str(self.port)], env=environment, cwd=workdir, stdout=self.log,
            stderr=subprocess.STDOUT)
        wait_until(self.answers, 30, f"the app server on port {self.port}")

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def answers(self):
        assert self.process.poll() is None, "the app server exited"
        with urllib.request.urlopen(f"{self.base}/health", timeout=5) as response:
            return response.status in (200, 503)

    def broadcast(self, text):
        request = urllib.request.Request(
            f"{self.base}/api/broadcast", method="POST", data=f'{{"text": "{text}"}}'.encode(),
            headers={"Content-Type": "application/json",
                     "Cookie": f"session={logged_in_cookie('+15550000008')}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def servers(request, tmp_path):
    made = []

    def start(url, count=2, **settings):
        made.extend(Server(url, tmp_path, **settings) for _ in range(count))
        return made[-count:]

    yield start
    for server in made:
        server.stop()


def logged_in_cookie(user):
    """A session cookie for ``user``, signed with the servers' SECRET_KEY (the
    demo only lets logged-in users connect)."""
    app = Flask("cookie-signer")
    app.secret_key = SECRET_KEY
    return app.session_interface.get_signing_serializer(app).dumps({"user": user})


@pytest.fixture
def listener():
    clients = []

    def connect(server, user="+15550000009"):
        received = []
        client = socketio.Client()
        client.on("broadcast", lambda data: received.append(data["text"]))
        client.connect(server.base, transports=["polling"], wait_timeout=10,
                       headers={"Cookie": f"session={logged_in_cookie(user)}"})
        clients.append(client)
        return received

    yield connect
    for client in clients:
        client.disconnect()


def deliver(sender, received, text, timeout=30):
    """Broadcast through ``sender`` until ``text`` arrives (a subscription
    being set up, or a failover, may swallow the first tries)."""
    def arrived():
        try:
            sender.broadcast(text)
        except OSError:
            return False
        time.sleep(0.2)
        return text in received

    wait_until(arrived, timeout, f"{text!r} to reach the other server", interval=0.3)


@pytest.mark.parametrize("mode", ["standalone", "sentinel", "cluster"])
def test_event_emitted_on_a_reaches_a_client_of_b(request, mode, servers, listener):
    if mode == "standalone":
        url = f"redis://{request.getfixturevalue('redis_server').address}"
    else:
        url = request.getfixturevalue(mode).url
    server_a, server_b = servers(url)
    received = listener(server_b)
    deliver(server_a, received, f"hello from A ({mode})")


def test_events_flow_again_after_a_sentinel_failover(own_sentinel, servers, listener):
    server_a, server_b = servers(own_sentinel.url)
    received = listener(server_b)
    deliver(server_a, received, "before the failover")
    old_port = own_sentinel.master_port()
    own_sentinel.process_on(old_port).kill()
    wait_until(lambda: own_sentinel.master_port() != old_port, 30, "the promotion")
    deliver(server_a, received, "after the failover", timeout=60)


EMIT_FROM_OUTSIDE = """
from example_app import create_app, redis_ext
from flask_core_redis.integrations.socketio_manager import socketio_manager
app = create_app()
with app.app_context():
    socketio_manager(redis_ext, write_only=True).emit("broadcast", {"text": "from a job"})
"""


def test_another_process_emits_with_a_write_only_manager(redis_server, servers, listener,
                                                        tmp_path):
    url = f"redis://{redis_server.address}"
    (server,) = servers(url, count=1)
    received = listener(server)
    environment = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(ROOT),
                   "SECRET_KEY": SECRET_KEY}

    def emitted():
        subprocess.run([sys.executable, "-c", EMIT_FROM_OUTSIDE], env=environment,
                       cwd=tmp_path, check=True, timeout=60)
        return "from a job" in received

    wait_until(emitted, 60, "the job's event to reach the client", interval=0.5)


def test_a_killed_server_leaves_no_ghost_after_the_ttl(redis_server, servers, listener,
                                                      make_app):
    url = f"redis://{redis_server.address}"
    (server,) = servers(url, count=1, REDIS_PRESENCE_TTL="2")
    listener(server, user="+15550004242")
    app, ext = make_app({"REDIS_URL": url})
    with app.app_context():
        wait_until(lambda: ext.presence.is_online("+15550004242"), 10, "the user online")
        server.process.kill()  # no disconnect, no more heartbeats
        wait_until(lambda: not ext.presence.is_online("+15550004242"), 15,
                   "the user to time out")


@pytest.mark.parametrize("mode", ["standalone", "cluster"])
def test_another_server_announces_the_users_of_a_killed_one_offline(request, mode, servers):
    """Nobody closes the connections of a killed server: the sweep of a server
    still running finds them expired and broadcasts ``online: False``."""
    if mode == "standalone":
        url = f"redis://{request.getfixturevalue('redis_server').address}"
    else:
        url = request.getfixturevalue(mode).url
    doomed, survivor = servers(url, REDIS_PRESENCE_TTL="2")  # a sweep every 2/3 s
    heard = []
    clients = []

    def connect(server, user):
        client = socketio.Client(reconnection=False)
        client.on("presence", lambda data: heard.append((data["user"], data["online"])))
        client.connect(server.base, transports=["polling"], wait_timeout=10,
                       headers={"Cookie": f"session={logged_in_cookie(user)}"})
        clients.append(client)

    connect(survivor, "+15550000001")
    connect(doomed, "+15550007777")
    wait_until(lambda: ("+15550007777", True) in heard, 10, "the user online")
    doomed.process.kill()  # no disconnect, no more heartbeats
    wait_until(lambda: ("+15550007777", False) in heard, 2 + 1 + 5,
               "the offline broadcast (TTL + one sweep interval + slack)")
    assert heard.count(("+15550007777", False)) == 1
    for client in clients:
        client.disconnect()
