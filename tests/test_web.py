"""The health endpoint and the 503 error handler."""

import pytest
import redis

from flask_core_redis import ConfigurationError


def test_health_route_is_off_by_default(make_app, memory_url):
    app, _ = make_app({"REDIS_URL": memory_url})
    assert app.test_client().get("/healthz/redis").status_code == 404


def test_health_route_answers_200_with_the_report(make_app, memory_url):
    app, _ = make_app({"REDIS_URL": memory_url, "REDIS_HEALTH_ROUTE": "/healthz/redis"})
    response = app.test_client().get("/healthz/redis")
    assert response.status_code == 200
    body = response.get_json()
    assert body["ok"] is True and body["mode"] == "memory"
    assert "presence" in body["plugins"]


def test_health_route_answers_503_when_redis_is_down(make_app):
    app, _ = make_app({"REDIS_URL": "redis://:hunter2@127.0.0.1:1", "REDIS_MAX_RETRIES": 0,
                       "REDIS_HEALTH_ROUTE": "/healthz/redis"})
    response = app.test_client().get("/healthz/redis")
    assert response.status_code == 503
    assert response.get_json()["ok"] is False
    assert b"hunter2" not in response.data


def test_bad_route_is_a_configuration_error(make_app, memory_url):
    with pytest.raises(ConfigurationError, match="REDIS_HEALTH_ROUTE='healthz' is invalid"):
        make_app({"REDIS_URL": memory_url, "REDIS_HEALTH_ROUTE": "healthz"})


def view_app(make_app, **config):
    app, ext = make_app({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_MAX_RETRIES": 0,
                         **config})

    @app.route("/counter")
    def counter():
        return {"n": ext.client.incr("n")}

    return app


def test_error_handler_turns_an_outage_into_a_503(make_app):
    app = view_app(make_app, REDIS_ERROR_HANDLER=True)
    response = app.test_client().get("/counter")
    assert response.status_code == 503
    assert response.get_json()["error"] == "redis_unavailable"


@pytest.mark.parametrize("error", [
    redis.TimeoutError("Timeout reading from socket"),
    redis.exceptions.MaxConnectionsError("Too many connections in use"),
    redis.AuthenticationError("invalid username-password pair"),
    redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
    redis.exceptions.SlotNotCoveredError("slot 42 is not covered"),
], ids=lambda error: type(error).__name__)
def test_every_outage_redis_py_raises_is_a_503(make_app, memory_url, error):
    app, _ = make_app({"REDIS_URL": memory_url, "REDIS_ERROR_HANDLER": True})

    @app.route("/fails")
    def fails():
        raise error

    response = app.test_client().get("/fails")
    assert (response.status_code, response.get_json()["error"]) == (503, "redis_unavailable")


def test_without_the_error_handler_the_error_propagates(make_app):
    app = view_app(make_app)
    with pytest.raises(redis.ConnectionError):
        app.test_client().get("/counter")


@pytest.mark.integration
def test_health_warns_near_maxmemory(make_app, own_redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{own_redis_server.address}",
                         "REDIS_MEMORY_WARNING_RATIO": 0.5})
    with app.app_context():
        assert "warnings" not in ext.health()
        used = int(ext.client.info("memory")["used_memory"])
        with own_redis_server.client() as admin:
            admin.config_set("maxmemory", used + used // 4)
        report = ext.health()
    assert report["ok"] is True
    assert report["maxmemory"] == used + used // 4
    assert report["warnings"][0].startswith("memory: ")


@pytest.mark.integration
@pytest.mark.parametrize(("client_made", "full_coverage"),
                         [("before", "no"), ("after", "no"), ("before", "yes")])
def test_a_slot_without_a_master_is_a_503_and_the_other_slots_still_serve(
        make_app, own_cluster, client_made, full_coverage):
    """A slot that no master serves (mid-failover, or a master lost for
    good) is an outage like a refused connection: a 503, not a 500, for an
    app that had its client and for one that makes it now (a worker starting
    mid-failover); the other slots still serve unless the servers require
    full coverage."""
    app, ext = make_app({"REDIS_URL": own_cluster.url, "REDIS_ERROR_HANDLER": True,
                         "REDIS_MAX_RETRIES": 0})

    @app.route("/counter/<key>")
    def counter(key):
        return {"n": ext.client.incr(key)}

    web = app.test_client()
    if client_made == "before":
        assert web.get("/counter/other").status_code == 200
    with own_cluster.master_of("lost").client() as admin:
        lost, other = (admin.execute_command("CLUSTER KEYSLOT", key) for key in ("lost", "other"))
    assert lost != other
    for node in own_cluster.nodes:
        with node.client() as admin:
            admin.config_set("cluster-require-full-coverage", full_coverage)
            admin.execute_command("CLUSTER DELSLOTS", lost)
    response = web.get("/counter/lost")
    assert (response.status_code, response.get_json()["error"]) == (503, "redis_unavailable")
    assert web.get("/counter/other").status_code == (200 if full_coverage == "no" else 503)
