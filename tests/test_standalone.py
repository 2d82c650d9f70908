"""A single real redis-server: auth, ACL, TLS, unix socket, retries, outages."""

import logging
import signal
import socket
import threading
from importlib.metadata import EntryPoint

import pytest
import redis
from flask import Response, current_app, jsonify

from flask_core_redis.plugin_api import manager

from .conftest import ACL_PASSWORD, ACL_USER, REQUIRE_PASSWORD
from .servers import free_port, health_version, run_forked, run_with_deadline, wait_until

pytestmark = pytest.mark.integration


def messages(caplog, level=None):
    return [r.getMessage() for r in caplog.records
            if r.name == "flask_core_redis" and (level is None or r.levelno == level)]


def all_log_text(caplog):
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


def test_commands_reach_the_server_and_connections_are_logged(make_app, redis_server,
                                                              key, events_log):
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}/0",
                         "REDIS_CLIENT_NAME": "fcr-basic"})
    with app.app_context():
        ext.client.set(key, "value")
        assert ext.client.get(key) == "value"
        assert ext.client.client_getname() == "fcr-basic"
    with redis_server.client() as admin:
        assert admin.get(key) == "value"
    assert f"[REDIS] {redis_server.address}: connected" in messages(events_log, logging.INFO)


def test_host_port_and_db_keys(make_app, redis_server, key):
    app, ext = make_app({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_server.port),
                         "REDIS_DB": "3"})
    with app.app_context():
        ext.client.set(key, "in-db-3")
    with redis_server.client(db=3) as admin:
        assert admin.get(key) == "in-db-3"


def test_unix_socket(make_app, redis_server, workdir, key):
    app, ext = make_app({"REDIS_URL": f"unix://{workdir / 'redis.sock'}?db=1"})
    with app.app_context():
        ext.client.set(key, "via-socket")
    with redis_server.client(db=1) as admin:
        assert admin.get(key) == "via-socket"


def test_requirepass_and_acl_user(make_app, auth_server, key):
    default_app, default_ext = make_app({
        "REDIS_URL": f"redis://:{REQUIRE_PASSWORD}@{auth_server.address}"})
    acl_app, acl_ext = make_app({
        "REDIS_URL": f"redis://{auth_server.address}",
        "REDIS_USERNAME": ACL_USER, "REDIS_PASSWORD": ACL_PASSWORD})
    with default_app.app_context():
        assert default_ext.client.acl_whoami() == "default"
        default_ext.client.set(key, "1")
    with acl_app.app_context():
        assert acl_ext.client.acl_whoami() == ACL_USER
        assert acl_ext.client.get(key) == "1"


def test_wrong_password_fails_without_leaking_it(make_app, auth_server, events_log):
    app, ext = make_app({"REDIS_URL": f"redis://{ACL_USER}:wrong-hunter2@"
                                      f"{auth_server.address}", "REDIS_MAX_RETRIES": 1})
    with app.app_context(), pytest.raises(redis.AuthenticationError) as caught:
        ext.client.ping()
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in all_log_text(events_log)
    assert messages(events_log, logging.ERROR)
    result = app.test_cli_runner().invoke(args=["redis", "ping"])
    assert result.exit_code == 1 and "hunter2" not in result.output


def test_no_secret_reaches_any_log_record(make_app, auth_server, events_log, key):
    app, ext = make_app({"REDIS_URL": f"redis://{ACL_USER}:{ACL_PASSWORD}@"
                                      f"{auth_server.address}"})
    with app.app_context():
        ext.client.set(key, "1")
        ext.health()
        ext.close()
    text = all_log_text(events_log)
    assert "connected" in text
    assert ACL_PASSWORD not in text


def test_tls_with_client_certificate(make_app, tls_server, tls_files, key):
    tls = {"REDIS_SSL_CA_CERTS": str(tls_files.ca),
           "REDIS_SSL_CERTFILE": str(tls_files.client),
           "REDIS_SSL_KEYFILE": str(tls_files.client)}
    app, ext = make_app({"REDIS_URL": f"rediss://{tls_server.address}", **tls})
    with app.app_context():
        ext.client.set(key, "over-tls")
        assert ext.client.get(key) == "over-tls"
    # The same server refuses a client without a certificate ...
    no_cert, no_cert_ext = make_app({"REDIS_URL": f"rediss://{tls_server.address}",
                                     "REDIS_SSL_CA_CERTS": str(tls_files.ca),
                                     "REDIS_MAX_RETRIES": 0})
    with no_cert.app_context(), pytest.raises(redis.ConnectionError):
        no_cert_ext.client.ping()
    # ... and a client that does not trust its CA refuses the server.
    untrusted, untrusted_ext = make_app({
        "REDIS_URL": f"rediss://{tls_server.address}", "REDIS_MAX_RETRIES": 0,
        "REDIS_SSL_CERTFILE": str(tls_files.client),
        "REDIS_SSL_KEYFILE": str(tls_files.client)})
    with untrusted.app_context(), pytest.raises(redis.ConnectionError, match="certificate"):
        untrusted_ext.client.ping()


def test_failed_connects_are_retried_with_the_linear_delays(make_app, events_log):
    port = free_port()  # nothing listens here
    app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{port}", "REDIS_MAX_RETRIES": 3})
    with app.app_context(), pytest.raises(redis.ConnectionError):
        ext.client.ping()
    retries = [r for r in messages(events_log, logging.INFO) if ": retry " in r]
    assert retries == [f"[REDIS] 127.0.0.1:{port}: retry {n} in {n * 50} ms"
                       for n in (1, 2, 3)]
    assert len(messages(events_log, logging.ERROR)) == 4  # the first try and 3 retries


def test_retry_count_is_configurable(make_app, events_log):
    app, ext = make_app({"REDIS_URL": f"redis://127.0.0.1:{free_port()}",
                         "REDIS_MAX_RETRIES": 0})
    with app.app_context(), pytest.raises(redis.ConnectionError):
        ext.client.ping()
    assert not [m for m in messages(events_log) if ": retry " in m]
    assert len(messages(events_log, logging.ERROR)) == 1


def test_app_keeps_serving_through_a_redis_restart(make_app, own_redis_server, events_log):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CONNECT_TIMEOUT": 500})

    @app.route("/hits")
    def hits():
        try:
            return jsonify(hits=ext.client.incr("hits"))
        except redis.ConnectionError:
            return jsonify(error="redis unavailable"), 503

    web = app.test_client()
    assert web.get("/hits").status_code == 200
    own_redis_server.stop()
    assert web.get("/hits").status_code == 503
    own_redis_server.start()  # same port, empty data
    wait_until(lambda: web.get("/hits").status_code == 200, 20, "the app to recover")
    logged = messages(events_log)
    address = own_redis_server.address
    assert any(m.startswith(f"[REDIS] {address}: disconnected: ") for m in logged)
    assert any(m.startswith(f"[REDIS] {address}: connection error: ") for m in logged)
    assert any(f"{address}: retry 1 in 50 ms" in m for m in logged)
    assert logged.count(f"[REDIS] {address}: connected") >= 2


def test_port_that_accepts_but_never_answers_times_out(make_app, events_log):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes the TCP handshake; nobody ever replies
    try:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        app, ext = make_app({"REDIS_URL": f"redis://{address}",
                             "REDIS_CONNECT_TIMEOUT": 200, "REDIS_MAX_RETRIES": 1})
        with app.app_context():
            outcome = run_with_deadline(ext.client.ping)
    finally:
        silent.close()
    assert isinstance(outcome.get("error"), redis.TimeoutError | redis.ConnectionError)
    assert len(messages(events_log, logging.ERROR)) == 2


def test_read_timeout_on_a_server_that_stops_answering(make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_SOCKET_TIMEOUT": 300, "REDIS_CONNECT_TIMEOUT": 300,
                         "REDIS_MAX_RETRIES": 1})
    with app.app_context():
        assert ext.client.ping()
        own_redis_server.signal(signal.SIGSTOP)
        try:
            outcome = run_with_deadline(ext.client.ping)
        finally:
            own_redis_server.signal(signal.SIGCONT)
        assert isinstance(outcome.get("error"), redis.TimeoutError)
        assert wait_until(ext.client.ping, 10, "the server to answer again")


def test_a_thousand_requests_use_one_pooled_connection(make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CLIENT_NAME": "fcr-pool"})

    @app.route("/count")
    def count():
        return {"n": ext.client.incr("requests")}

    web = app.test_client()
    for _ in range(1000):
        assert web.get("/count").status_code == 200
    with own_redis_server.client() as admin:
        assert admin.get("requests") == "1000"
        ours = [c for c in admin.client_list() if c["name"] == "fcr-pool"]
    assert len(ours) == 1


def test_close_releases_the_server_connections(make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CLIENT_NAME": "fcr-close"})
    with app.app_context():
        ext.client.ping()
        ext.duplicate().ping()
        ext.close()

    def ours():
        with own_redis_server.client() as admin:
            return [c for c in admin.client_list() if c["name"] == "fcr-close"]

    wait_until(lambda: not ours(), 10, "the server to see the connections closed")


def test_subscribers_receive_connection_events(make_app, redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}"})
    seen = []
    with app.app_context():
        ext.events.subscribe(seen.append)
        ext.client.ping()
    assert [(e.kind, e.address, e.prefix) for e in seen] == [
        ("connect", redis_server.address, "REDIS")]


def test_health_of_a_real_server(make_app, redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}"})
    with app.app_context():
        report = ext.health()
    with redis_server.client() as admin:
        version = health_version(admin.info("server"))
    assert report["ok"] is True
    assert report["server_version"] == version
    assert report["role"] == "master"
    assert "error" not in report


def child_has_a_connection_of_its_own(ext, key):
    """gunicorn --preload: the parent used Redis, then forked a worker. True if
    the worker's commands reach the server over a connection of its own (told
    apart by the server's client id, not by replies, which a shared socket
    would also give) and the parent's connection still serves the parent."""
    parent_id = ext.client.client_id()
    child_ok = run_forked(lambda: ext.client.client_id() != parent_id
                          and ext.client.incr(key) == 1)
    return child_ok and ext.client.client_id() == parent_id


@pytest.mark.parametrize("topology", ["standalone", "sentinel"])
def test_forked_worker_opens_its_own_connection(request, make_app, topology, key):
    url = (f"redis://{request.getfixturevalue('redis_server').address}"
           if topology == "standalone" else request.getfixturevalue("sentinel").url)
    app, ext = make_app({"REDIS_URL": url})
    with app.app_context():
        assert child_has_a_connection_of_its_own(ext, key)
        assert ext.client.get(key) == "1"


def test_the_fork_check_fails_when_the_pool_ignores_the_fork(make_app, own_redis_server,
                                                           monkeypatch, key):
    """The check above can fail: with redis-py's process-id check turned off, the
    child writes over the parent's socket."""
    monkeypatch.setattr(redis.ConnectionPool, "_checkpid", lambda pool: None)
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}"})
    with app.app_context():
        assert not child_has_a_connection_of_its_own(ext, key)


def server_of(request, topology, key):
    """A deployment of ``topology`` for one test: its URL, and the process
    that serves ``key``."""
    if topology == "standalone":
        server = request.getfixturevalue("own_redis_server")
        return f"redis://{server.address}", server
    deployment = request.getfixturevalue(f"own_{topology}")
    if topology == "sentinel":
        return deployment.url, deployment.process_on(deployment.master_port())
    return deployment.url, deployment.master_of(key)


@pytest.mark.parametrize("topology", ["standalone", "sentinel", "cluster"])
def test_a_command_cut_off_mid_flight_is_retried_at_most_max_retries_times(
        request, make_app, events_log, topology, key):
    """redis-py nests a socket-connect retry loop inside the command retry loop
    (and Sentinel a master lookup, Cluster its own loop); the policy's count
    must hold for the command as a whole, on every topology."""
    url, server = server_of(request, topology, key)
    app, ext = make_app({"REDIS_URL": url, "REDIS_MAX_RETRIES": 3,
                         "REDIS_CLIENT_NAME": "fcr-blocked"})

    def kill_once_blocked():
        def blocked():
            with server.client() as admin:
                return any(c["name"] == "fcr-blocked" and c["cmd"] == "blpop"
                           for c in admin.client_list())
        wait_until(blocked, 10, "the client to block in BLPOP")
        server.kill()

    killer = threading.Thread(target=kill_once_blocked)
    with app.app_context():
        ext.client.ping()
        killer.start()
        with pytest.raises(redis.ConnectionError):
            ext.client.blpop([key], timeout=20)
    killer.join()
    retries = [m.rsplit(": ", 1)[1] for m in messages(events_log) if ": retry " in m]
    assert retries == ["retry 1 in 50 ms", "retry 2 in 100 ms", "retry 3 in 150 ms"]


def connections_named(server, name):
    with server.client() as admin:
        return [c for c in admin.client_list() if c["name"] == name]


def test_subscriptions_a_request_forgets_are_closed_when_it_ends(make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CLIENT_NAME": "fcr-scoped"})
    forgotten = []  # kept alive: only the teardown can close them

    @app.get("/listen")
    def listen():
        forgotten.append(ext.subscribe("news"))
        forgotten.append(ext.duplicate())
        forgotten[-1].ping()
        return {"n": ext.client.incr("requests")}

    web = app.test_client()
    for _ in range(100):
        response = web.get("/listen")
        assert response.status_code == 200
        response.close()  # as every WSGI server does once the response is sent
    wait_until(lambda: len(connections_named(own_redis_server, "fcr-scoped")) <= 1, 10,
               "the requests' own connections to close")
    assert len(connections_named(own_redis_server, "fcr-scoped")) == 1  # the shared pool's


def test_subscriptions_made_at_start_up_or_in_a_thread_stay_open(make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CLIENT_NAME": "fcr-kept"})
    with app.app_context():  # at start-up, outside any request
        at_start_up = ext.subscribe("news")
    in_thread = []

    def background():
        with app.app_context():
            in_thread.append(ext.subscribe("news"))

    worker = threading.Thread(target=background)
    worker.start()
    worker.join()
    app.test_client().get("/nothing-here")  # a request's teardown closes none of them
    wait_until(lambda: len(connections_named(own_redis_server, "fcr-kept")) == 2, 10,
               "both subscriptions to be connected")
    with app.app_context():
        assert ext.publish("news", "still listening") == 2
        assert at_start_up.get_message(timeout=5)["type"] == "subscribe"
        ext.close()
    wait_until(lambda: not connections_named(own_redis_server, "fcr-kept"), 10,
               "ext.close() to close them")


def test_a_cli_command_closes_what_it_forgot_when_it_ends(make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CLIENT_NAME": "fcr-cli"})
    counts, forgotten = [], []  # kept alive: only the command's end can close it

    @app.cli.command("listen")
    def listen():
        forgotten.append(ext.subscribe("news"))
        counts.append(len(wait_until(lambda: connections_named(own_redis_server, "fcr-cli"),
                                     10, "the subscription")))

    assert app.test_cli_runner().invoke(args=["listen"]).exit_code == 0
    assert counts == [1]
    wait_until(lambda: not connections_named(own_redis_server, "fcr-cli"), 10,
               "the command's subscription to close")


def test_a_streamed_response_reads_its_views_subscription_until_it_is_closed(
        make_app, own_redis_server):
    """Server-sent events: the view subscribes, the response's generator reads.
    The request's app context is torn down when the view returns (Flask 3.1
    does so even under stream_with_context); the subscription lives on until
    the response is closed."""
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CLIENT_NAME": "fcr-stream"})

    @app.get("/events")
    def events():
        subscription = ext.subscribe("news")

        def stream():
            for message in subscription.listen():
                if message["type"] == "message":
                    yield f"data: {message['data']}\n\n"

        return Response(stream(), mimetype="text/event-stream")

    def publish_once_subscribed():
        with app.app_context():
            wait_until(lambda: ext.publish("news", "hello") == 1, 10, "the subscription")

    publisher = threading.Thread(target=publish_once_subscribed)
    publisher.start()
    # The test client reads the first chunk; the view has returned by then.
    response = app.test_client().get("/events", buffered=False)
    publisher.join()
    assert next(iter(response.response)) == b"data: hello\n\n"
    response.close()
    wait_until(lambda: len(connections_named(own_redis_server, "fcr-stream")) <= 1, 10,
               "the stream's subscription to close with the response")


def test_a_nested_app_context_in_a_request_does_not_close_its_subscription(
        make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}"})

    def subscribe_in_a_helper():
        with current_app.app_context():
            return ext.subscribe("news")

    @app.get("/nested")
    def nested():
        subscription = subscribe_in_a_helper()
        confirmed = subscription.get_message(timeout=5)
        return {"type": confirmed["type"], "still": subscription.subscribed}

    assert app.test_client().get("/nested").get_json() == {"type": "subscribe", "still": True}


@pytest.mark.parametrize("used_before", [True, False])
def test_health_of_a_hung_server_returns_not_ok_within_the_connect_timeout(
        make_app, own_redis_server, used_before):
    """A server stopped by SIGSTOP, with no socket timeout configured: the
    health report and route still answer, in about the connect timeout."""
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CONNECT_TIMEOUT": 300, "REDIS_HEALTH_ROUTE": "/health"})
    def health():
        with app.app_context():
            return ext.health()

    if used_before:  # the health check's connection is open and idle
        assert health()["ok"] is True
    own_redis_server.signal(signal.SIGSTOP)
    try:
        outcome = run_with_deadline(health, seconds=20)
        response = run_with_deadline(lambda: app.test_client().get("/health"), 20)
    finally:
        own_redis_server.signal(signal.SIGCONT)
    report = outcome["value"]
    assert report["ok"] is False and "Timeout" in report["error"]
    assert report["plugins"] == {}
    assert response["value"].status_code == 503


def test_health_answers_while_writes_are_paused(make_app, own_redis_server, monkeypatch):
    """CLIENT PAUSE WRITE, as a failover does: the server answers PING and INFO
    but a plugin's health check that writes waits. health() still answers, not
    ok, in about the connect timeout; a second call meanwhile does not start
    another check."""
    installed = manager.plugin_entry_points()
    writer = EntryPoint("writer", "tests.plugin_samples:WritingHealthPlugin",
                        manager.ENTRY_POINT_GROUP)
    monkeypatch.setattr(manager, "plugin_entry_points", lambda: [*installed, writer])
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CONNECT_TIMEOUT": 300})

    def health():
        with app.app_context():
            return ext.health()

    healthy = health()
    assert healthy["ok"] is True, repr(healthy)
    assert healthy["plugins"]["writer"] == {"wrote": True}
    with own_redis_server.client() as admin:
        admin.execute_command("CLIENT", "PAUSE", 4000, "WRITE")
        try:
            first = run_with_deadline(health)["value"]  # ok, had it waited for the pause
            second = run_with_deadline(health)["value"]
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
    assert first["ok"] is False and first["error"] == "no answer within 800 ms"
    assert second["ok"] is False and "still waiting" in second["error"]
    wait_until(lambda: health()["ok"], 10, "health to recover once writes resume")


@pytest.mark.parametrize(("use", "error"), [
    (lambda ext: ext.otp.verify_otp("+15550109988", "123456"), "OtpUnavailable"),
    (lambda ext: ext.presence.is_online("ann"), "TimeoutError"),
    (lambda ext: ext.presence.mark_online("ann", 60), "TimeoutError"),
])
def test_plugins_fail_fast_on_a_hung_server_without_a_socket_timeout(
        make_app, own_redis_server, use, error):
    """A warm connection to a server stopped by SIGSTOP, REDIS_SOCKET_TIMEOUT
    unset: a login or a presence call in a request raises in about the
    connect timeout instead of hanging the request."""
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_CONNECT_TIMEOUT": 200, "REDIS_MAX_RETRIES": 0})

    def call():
        with app.app_context():
            return use(ext)

    call()  # the connection is open and idle
    own_redis_server.signal(signal.SIGSTOP)
    try:
        outcome = run_with_deadline(call)
    finally:
        own_redis_server.signal(signal.SIGCONT)
    assert type(outcome.get("error")).__name__ == error
