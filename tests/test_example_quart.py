"""The Quart demo: phone login through Quart's test client on the embedded
server, and who is online over Socket.IO with two workers of the app, each
served by uvicorn, on a real Redis."""

import asyncio
import os
import re
import time
import uuid

import pytest
import redis
import requests
import socketio

from example_quart import create_app, redis_ext
from example_quart.live import session_user

from .servers import wait_until
from .test_async_client import AsgiServer

pytestmark = pytest.mark.quart

PHONE, OTHER_PHONE = "+1 555 010 9988", "+1 555 010 7766"
MASKED, OTHER_MASKED = "+15550•••88", "+15550•••66"
#: Alice, as the presence room hears of her: never her whole number.
ALICE = MASKED


@pytest.fixture
def no_outside_config(monkeypatch, tmp_path):
    """No REDIS_* variable, and an empty .env here, which hides any .env in the
    folders above (python-dotenv looks upwards from the working directory)."""
    for name in [name for name in os.environ if name.startswith("REDIS_")]:
        monkeypatch.delenv(name)
    (tmp_path / ".env").write_text("")
    monkeypatch.chdir(tmp_path)


class Phones:
    """An SMS gateway for the tests: the last code sent to each phone."""

    def __init__(self):
        self.codes = {}

    async def send(self, phone, text):
        self.codes[phone] = re.fullmatch(r"Your login code is (\d{6})", text).group(1)


async def page(web, path="/"):
    return await (await web.get(path)).get_data(as_text=True)


def served(app, use):
    """``use(test_client)`` while ``app`` serves (its serving hooks run), then
    the app's Redis closed."""
    async def serve():
        try:
            async with app.test_app() as test_app:
                return await use(test_app.test_client())
        finally:
            async with app.app_context():
                await redis_ext.aclose()

    return asyncio.run(serve())


def test_phone_login_with_a_one_time_code(no_outside_config):
    """The code reaches the development outbox the login page shows; a wrong
    one costs an attempt; the right one logs in, and the user is listed
    among those online only once a Socket.IO connection is open."""
    app = create_app({"TESTING": True, "REDIS_URL": f"memory://quart-{uuid.uuid4().hex}"})

    async def use(web):
        await web.post("/login/code", form={"phone": PHONE})
        code = re.search(r"Your login code is (\d{6})", await page(web)).group(1)
        wrong = "000000" if code != "000000" else "111111"
        await web.post("/login/verify", form={"code": wrong})
        refused = await page(web)
        await web.post("/login/verify", form={"code": code})
        return refused, await page(web), await (await web.get("/api/online")).get_json()

    refused, dashboard, online = served(app, use)
    assert "Wrong code: 4 attempts left." in refused
    assert f"Logged in as <strong>{MASKED}</strong>" in dashboard
    assert online == {"online": []}


def test_refusals_are_explained(no_outside_config):
    app = create_app({"TESTING": True, "REDIS_URL": f"memory://quart-{uuid.uuid4().hex}"},
                     send_sms=Phones().send)

    async def use(web):
        await web.post("/login/code", form={"phone": "call me"})
        not_a_phone = await page(web)
        await web.post("/login/code", form={"phone": PHONE})
        await web.post("/login/code", form={"phone": PHONE})
        too_soon = await page(web)
        anonymous = (await web.get("/api/online")).status_code
        return not_a_phone, too_soon, anonymous

    not_a_phone, too_soon, anonymous = served(app, use)
    assert "That is not a phone number" in not_a_phone
    assert re.search(r"A code was sent moments ago\. Ask again in \d+ s\.", too_soon)
    assert "Development SMS outbox" not in too_soon  # codes went to the given sender
    assert anonymous == 401


def test_the_socket_handshake_trusts_only_a_session_the_app_signed(no_outside_config):
    app = create_app({"SECRET_KEY": "quart-demo-secret", "REDIS_URL": "memory://quart-demo"})
    other = create_app({"SECRET_KEY": "another-secret", "REDIS_URL": "memory://quart-demo"})

    def cookie(signer, data):
        return signer.session_interface.get_signing_serializer(signer).dumps(data)

    def user_of(header):
        return session_user(app, {"HTTP_COOKIE": header})

    assert user_of(f"theme=dark; session={cookie(app, {'user': '+15550109988'})}") == (
        "+15550109988")
    for header in ["", "session=", "session=forged", "session=\u00e9\u00e9",
                   f"session={cookie(other, {'user': '+15550109988'})}",
                   f"session={cookie(app, {'pending_phone': '+15550109988'})}"]:
        assert user_of(header) is None, header


def log_in(base, phones, phone):
    """A logged-in HTTP session of ``phone``'s user, and its cookie header."""
    web = requests.Session()
    web.post(f"{base}/login/code", data={"phone": phone}, timeout=10)
    number = phone.replace(" ", "")
    web.post(f"{base}/login/verify", data={"code": phones.codes[number]}, timeout=10)
    return web, f"session={web.cookies['session']}"


def presence_client(events):
    client = socketio.Client(reconnection=False)
    client.on("presence", events.append)
    return client


def worker(redis_server, prefix, phones):
    """One worker of the app: an app of its own, served by uvicorn in a
    thread, on the Redis the workers share."""
    return AsgiServer(create_app({"REDIS_URL": f"redis://{redis_server.address}",
                                  "REDIS_KEY_PREFIX": prefix, "SECRET_KEY": "two-workers",
                                  "REDIS_PRESENCE_TTL": "1"}, send_sms=phones.send))


@pytest.mark.integration
def test_who_is_online_over_socket_io_across_workers(no_outside_config, redis_server):
    """Two workers on a real Redis: a user's Socket.IO connection to one
    makes them online, announced to the sockets of the other, kept by the
    heartbeats past the presence TTL, and offline once it closes; a visitor
    who is not logged in, or whose cookie the app did not sign, is refused."""
    phones, heard = Phones(), []
    prefix = f"quart-{uuid.uuid4().hex}:"
    with worker(redis_server, prefix, phones) as one, worker(redis_server, prefix, phones) as two:
        base_one, base_two = f"http://127.0.0.1:{one.port}", f"http://127.0.0.1:{two.port}"
        bob_web, bob_cookie = log_in(base_one, phones, OTHER_PHONE)
        _, alice_cookie = log_in(base_two, phones, PHONE)
        bob, alice = presence_client(heard), presence_client([])
        try:
            bob.connect(base_one, headers={"Cookie": bob_cookie}, wait_timeout=10)
            # Worker one listens once its first socket is open.
            wait_until(lambda: listeners(redis_server, prefix), 10, "worker one to listen")
            alice.connect(base_two, headers={"Cookie": alice_cookie}, wait_timeout=10)
            wait_until(lambda: {"user": ALICE, "online": True} in heard, 10,
                       "bob, on worker one, to hear that alice came online on worker two")

            def online():
                return set(bob_web.get(f"{base_one}/api/online", timeout=10).json()["online"])

            assert online() == {MASKED, OTHER_MASKED}
            # Online throughout two presence TTLs: the heartbeats renew them.
            until = time.monotonic() + 2.5
            while time.monotonic() < until:
                assert online() == {MASKED, OTHER_MASKED}
            assert heard.count({"user": ALICE, "online": True}) == 1
            assert not any("0109988" in str(event) for event in heard)

            alice.disconnect()
            wait_until(lambda: {"user": ALICE, "online": False} in heard, 10,
                       "bob to hear that alice went offline")
            assert online() == {OTHER_MASKED}
            for base, headers in [(base_one, {}), (base_two, {"Cookie": "session=forged"})]:
                with pytest.raises(socketio.exceptions.ConnectionError):
                    presence_client([]).connect(base, headers=headers, wait_timeout=10)
        finally:
            bob.disconnect()
            alice.disconnect()


def listeners(redis_server, prefix):
    """How many Socket.IO servers listen on the workers' channel."""
    host, port = redis_server.address.rsplit(":", 1)
    with redis.Redis(host=host, port=int(port)) as client:
        return dict(client.pubsub_numsub(f"{prefix}flask-socketio"))[
            f"{prefix}flask-socketio".encode()]
