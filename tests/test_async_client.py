"""The asyncio client: ``ext.async_client`` on every topology, pooled across
the event loops Flask's async views run in, under an ASGI server through
``WsgiToAsgi``, and on Quart's serving loop; its retries, events, closing,
and a forked child's own connections."""

import asyncio
import concurrent.futures
import gc
import http.client
import signal
import threading
import time
import uuid
import warnings

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster

from flask_core_redis.state import app_state

from .conftest import ACL_PASSWORD, ACL_USER
from .servers import free_port, run_forked, run_with_deadline, wait_until


def run(coroutine):
    return asyncio.run(coroutine)


def test_async_client_in_every_mode(mode, mode_app, key):
    """The same operations as the blocking client, on the same data, with
    pipelines (across Cluster slots too) and a bytes client beside it."""
    app, ext = mode_app()

    async def use():
        client = ext.async_client
        assert isinstance(client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster)
        await client.set(key, "é")
        async with client.pipeline() as pipe:
            pipe.incr(f"{key}:a")
            pipe.incr(f"{key}:b")
            pipe.get(key)
            replies = await pipe.execute()
        raw = await ext.get_async_client(decode_responses=False).get(key)
        return replies, raw, await client.get(key)

    with app.app_context():
        replies, raw, text = run(use())
        assert replies == [1, 1, "é"]
        assert raw == "é".encode()
        assert text == "é"
        assert ext.client.get(f"{key}:b") == "1"  # what the blocking client sees


@pytest.mark.integration
def test_concurrent_first_commands_on_a_cluster(make_app, cluster):
    """Thirty commands at once on a client that has not read the slot map
    yet: redis-py's own first read, raced by them, closed connections the
    others were using."""
    for _ in range(3):  # a fresh client each time: the race is on the first read
        app, ext = make_app({"REDIS_URL": cluster.url, "REDIS_SOCKET_TIMEOUT": "2000"})

        async def burst(ext=ext):
            await asyncio.gather(*(ext.async_client.set(f"burst:{i}", i) for i in range(30)))
            async with ext.async_client.pipeline() as pipe:
                for i in range(30):
                    pipe.get(f"burst:{i}")
                return await pipe.execute()

        with app.app_context():
            assert run(burst()) == [str(i) for i in range(30)]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["standalone", "cluster"])
def test_a_full_pool_waits_under_pool_timeout_and_fails_at_once_without(
        request, mode_app, mode, key):
    """Four commands at once on a pool of one connection (per node): with
    REDIS_POOL_TIMEOUT each waits for the connection and all succeed, on
    Cluster too (redis-py's asyncio cluster nodes never wait); without it,
    the others fail at once with MaxConnectionsError."""
    def burst(config):
        app, ext = mode_app({"REDIS_MAX_CONNECTIONS": "1", **config})

        async def four_at_once():
            await ext.async_client.ping()  # the slot map, on Cluster
            return await asyncio.gather(
                *(ext.async_client.blpop(f"{{{key}}}:{n}", 0.1) for n in range(4)),
                return_exceptions=True)

        with app.app_context():
            return run(four_at_once())

    assert burst({"REDIS_POOL_TIMEOUT": "5000"}) == [None] * 4
    refused = burst({})
    assert any(isinstance(outcome, redis.MaxConnectionsError) for outcome in refused)


def _connects(app):
    """The connect events of ``app``'s registration, from now on."""
    seen = []
    app_state(app, "REDIS").events.subscribe(
        lambda event: seen.append(event) if event.kind == "connect" else None)
    return seen


def _clients_named(server, name):
    with server.client() as admin:
        return [client for client in admin.client_list() if client["name"] == name]


@pytest.mark.integration
def test_flask_async_views_share_one_pool_across_their_event_loops(make_app, redis_server,
                                                                   key):
    """Under a WSGI server each async view runs in an event loop of its own,
    closed when it returns: the client survives them all, on one pooled
    connection, and no loop leaves a socket open."""
    name = f"fcr-{uuid.uuid4().hex[:8]}"
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}",
                         "REDIS_CLIENT_NAME": name, "REDIS_MAX_CONNECTIONS": "2"})
    connects = _connects(app)

    @app.get("/count")
    async def count():
        client = ext.async_client
        value = await client.incr(key)
        async with client.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.exists(key)
            assert await pipe.execute() == [str(value), 1]
        return {"value": value}

    test_client = app.test_client()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        values = [test_client.get("/count").get_json()["value"] for _ in range(300)]
        gc.collect()
    assert values == list(range(1, 301))
    assert len(connects) == 1
    assert len(_clients_named(redis_server, name)) == 1


def _get_many(port, path, count, concurrency):
    def one(_):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


class AsgiServer:
    """uvicorn serving ``app`` on a free port in a thread, lifespan included."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="auto")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: self.server.started, 20, "uvicorn to start")
        return self

    def __exit__(self, *exc_info):
        self.server.should_exit = True
        self.thread.join(20)


@pytest.mark.integration
@pytest.mark.quart  # uvicorn comes with the Quart test tools
def test_flask_under_an_asgi_server_through_wsgi_to_asgi(make_app, redis_server, key):
    """Flask wrapped by asgiref's WsgiToAsgi under uvicorn, 200 requests 8 at
    a time: every one answered, on at most the pool's connections."""
    from asgiref.wsgi import WsgiToAsgi

    name = f"fcr-{uuid.uuid4().hex[:8]}"
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}",
                         "REDIS_CLIENT_NAME": name, "REDIS_MAX_CONNECTIONS": "4",
                         "REDIS_POOL_TIMEOUT": "5000"})
    connects = _connects(app)

    @app.get("/count")
    async def count():
        return {"value": await ext.async_client.incr(key)}

    with AsgiServer(WsgiToAsgi(app)) as server:
        answers = _get_many(server.port, "/count", 200, 8)
    assert {status for status, _ in answers} == {200}
    assert len(connects) <= 4
    with redis_server.client() as admin:
        assert admin.get(key) == "200"


@pytest.mark.integration
@pytest.mark.quart
def test_quart_serves_on_its_loop_and_closes_its_clients_when_it_stops(redis_server, key):
    """CoreRedis(quart_app): configuration, clients homed on the serving loop
    (no hand-over), at most the pool's connections over 200 requests 8 at a
    time, all closed once the app stops serving."""
    from quart import Quart

    from flask_core_redis import CoreRedis

    name = f"fcr-{uuid.uuid4().hex[:8]}"
    app = Quart(__name__)
    app.config.update(REDIS_URL=f"redis://{redis_server.address}", REDIS_CLIENT_NAME=name,
                      REDIS_MAX_CONNECTIONS="4", REDIS_POOL_TIMEOUT="5000",
                      SECRET_KEY="quart-test-secret")
    ext = CoreRedis(app)
    connects = _connects(app)
    homes = set()

    @app.get("/count")
    async def count():
        client = ext.async_client
        homes.add(client.home is asyncio.get_running_loop())
        return {"value": await client.incr(key)}

    with AsgiServer(app) as server:
        answers = _get_many(server.port, "/count", 200, 8)
    assert {status for status, _ in answers} == {200}
    assert homes == {True}
    assert 1 <= len(connects) <= 4
    wait_until(lambda: not _clients_named(redis_server, name), 10,
               "the serving loop's clients to close")


@pytest.mark.quart
def test_the_health_route_and_the_redis_commands_under_quart(memory_url):
    from quart import Quart

    from flask_core_redis import CoreRedis

    app = Quart(__name__)
    app.config.update(REDIS_URL=memory_url, SECRET_KEY="quart-test-secret",
                      REDIS_HEALTH_ROUTE="/health")
    ext = CoreRedis(app)

    async def serve():
        async with app.test_app() as test_app:
            response = await test_app.test_client().get("/health")
            async with app.app_context():
                report = await ext.ahealth()
            return response.status_code, await response.get_json(), report

    status, body, report = run(serve())
    assert status == 200 and body["ok"] is True and report["ok"] is True
    runner = app.test_cli_runner()
    ping = runner.invoke(args=["redis", "ping"])
    assert ping.exit_code == 0, ping.output
    assert ping.output.startswith("PONG")
    cleared = runner.invoke(args=["redis", "cache", "clear", "pages"])
    assert cleared.exit_code == 0, cleared.output
    assert "invalidated" in cleared.output


def ext_primaries(app, ext):
    with app.app_context():
        return ext.client.get_primaries()


def test_ahealth_reports_what_health_does(mode, mode_app):
    """The same report through the asyncio client, on every topology (on
    Cluster the memory of the primary nearest its limit, read per primary)."""
    app, ext = mode_app()
    with app.app_context():
        blocking = ext.health()
        asyncio_report = run(ext.ahealth())
    assert asyncio_report["ok"] is True, asyncio_report
    assert asyncio_report.keys() == blocking.keys()
    for fact in ("mode", "role", "server_version", "address", "plugins"):
        assert asyncio_report.get(fact) == blocking.get(fact)
    if mode == "cluster":  # the fullest primary may differ from one reading to the next
        primaries = {node.name for node in ext_primaries(app, ext)}
        assert {asyncio_report["memory_node"], blocking["memory_node"]} <= primaries


@pytest.mark.integration
def test_ahealth_answers_within_its_bound_from_a_hung_server(make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CONNECT_TIMEOUT": 300})
    with app.app_context():
        assert run(ext.ahealth())["ok"] is True
        own_redis_server.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            report = run(ext.ahealth())
            took = time.monotonic() - started
        finally:
            own_redis_server.signal(signal.SIGCONT)
    assert report["ok"] is False and "error" in report
    assert took < 0.3 + 0.5 + 1  # CONNECT_TIMEOUT + the margin, with slack for a busy machine


@pytest.mark.integration
def test_retries_follow_the_policy_and_are_reported(make_app):
    port = free_port()  # nothing listens there
    app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{port}", "REDIS_MAX_RETRIES": "2",
                         "REDIS_CONNECT_TIMEOUT": "200"})
    retries = []
    with app.app_context():
        ext.events.subscribe(lambda event: retries.append(event) if event.kind == "retry"
                             else None)
        with pytest.raises(redis.ConnectionError):
            run(ext.async_client.ping())
        report = run(ext.ahealth())
    assert [event.attempt for event in retries[:2]] == [1, 2]
    assert report["ok"] is False and report["error"]


@pytest.mark.integration
def test_close_closes_the_async_clients(make_app, redis_server):
    name = f"fcr-{uuid.uuid4().hex[:8]}"
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}",
                         "REDIS_CLIENT_NAME": name})
    with app.app_context():
        run(ext.async_client.ping())
        run(ext.get_async_client(decode_responses=False).ping())
        assert len(_clients_named(redis_server, name)) == 2
        ext.close()
        assert _clients_named(redis_server, name) == []
        run(ext.async_client.ping())  # opens anew
        run(ext.aclose())
        assert _clients_named(redis_server, name) == []


@pytest.mark.integration
def test_credentials_never_show(make_app, auth_server, events_log):
    """An ACL user's password reaches the server and nothing else: not the
    client's or its pool's repr, not a log line, not the error of a refused
    login, which is raised at once (never retried)."""
    address = auth_server.address
    app, ext = make_app({"REDIS_URL": f"redis://{ACL_USER}:{ACL_PASSWORD}@{address}"})
    wrong, wrong_ext = make_app({"REDIS_URL": f"redis://{ACL_USER}:wrong-pw-s3cret@{address}",
                                 "REDIS_MAX_RETRIES": "3"})
    with app.app_context():
        client = ext.async_client
        assert run(client.acl_whoami()) == ACL_USER
        shown = [repr(client), repr(client.connection_pool)]
    with wrong.app_context(), pytest.raises(redis.AuthenticationError) as refused:
        run(wrong_ext.async_client.ping())
    text = "\n".join([*shown, str(refused.value), repr(refused.value), events_log.text])
    assert ACL_PASSWORD not in text and "wrong-pw-s3cret" not in text
    assert "retry" not in events_log.text.lower()


@pytest.mark.integration
@pytest.mark.parametrize("deployment", ["tls_server", "tls_sentinel", "tls_cluster"])
def test_tls_on_every_topology(request, make_app, tls_files, key, deployment):
    """The asyncio client over TLS: commands, a pipeline, the cache's async
    forms and the health check, on one server, a Sentinel master and a Cluster."""
    found = request.getfixturevalue(deployment)
    url = (f"rediss://localhost:{found.port}" if deployment == "tls_server" else found.url)
    app, ext = make_app({"REDIS_URL": url, **tls_files.config()})

    async def use():
        await ext.async_client.set(key, "secret-free")
        async with ext.async_client.pipeline() as pipe:
            pipe.get(key)
            pipe.incr(f"{key}:n")
            replies = await pipe.execute()
        await ext.cache.aset(key, {"over": "tls"})
        return replies, await ext.cache.aget(key), await ext.ahealth()

    with app.app_context():
        replies, cached, report = run(use())
    assert replies == ["secret-free", 1]
    assert cached == {"over": "tls"}
    assert report["ok"] is True, report


@pytest.mark.integration
def test_a_forked_child_opens_its_own_connections(make_app, redis_server, key):
    """A child forked with the parent's clients open makes its own, and
    leaves the parent's alone: collecting them in the child, inside its
    event loop, would close their transports in the selector the two
    processes share, and the parent's next command would wait for ever."""
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}"})
    with app.app_context():
        run(ext.async_client.set(key, "parent"))

    async def read_then_collect():
        value = await ext.async_client.get(key)
        gc.collect()
        return value

    def child():
        with app.app_context():
            return run(read_then_collect()) == "parent"

    assert run_forked(child)

    def parent_reads():
        with app.app_context():
            return run(ext.async_client.get(key))

    assert run_with_deadline(parent_reads, 10) == {"value": "parent"}
