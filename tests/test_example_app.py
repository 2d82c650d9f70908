import pytest

from example_app import EMBEDDED_URL, create_app, redis_ext


@pytest.fixture
def no_outside_config(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("REDIS_URL", "REDIS_HOST", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES"):
        monkeypatch.delenv(name, raising=False)


def test_runs_on_the_embedded_server_by_default(no_outside_config):
    app = create_app({"TESTING": True})
    web = app.test_client()
    first = web.get("/")
    assert first.status_code == 200
    assert b"Redis is up" in first.data and b"memory" in first.data
    assert b"<strong>2</strong>" in web.get("/").data
    assert web.get("/health").get_json()["ok"] is True
    with app.app_context():
        assert redis_ext.settings.address == EMBEDDED_URL
        redis_ext.client.delete("example:visits")
        redis_ext.close()


def test_environment_selects_a_real_redis_and_down_is_a_503(no_outside_config,
                                                             monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    monkeypatch.setenv("REDIS_MAX_RETRIES", "0")
    app = create_app({"TESTING": True})
    web = app.test_client()
    assert web.get("/health").status_code == 503
    page = web.get("/")
    assert page.status_code == 200 and b"Redis is down" in page.data
    with app.app_context():
        redis_ext.close()


def test_cli_is_registered(no_outside_config):
    app = create_app()
    result = app.test_cli_runner().invoke(args=["redis", "ping"])
    assert result.exit_code == 0 and result.output.startswith("PONG")
