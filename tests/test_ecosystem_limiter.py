"""Flask-Limiter on the app's Redis: fixed and moving windows, enforced across
two app servers, with keys in the app's server under its key prefix."""

import uuid

import pytest

from flask_core_redis.connection.connections import EventedConnection
from flask_core_redis.integrations.limiter import limiter_storage

from .servers import require_package

flask_limiter = require_package("flask_limiter")

pytestmark = [pytest.mark.ecosystem, pytest.mark.usefixtures("refuse_default_port")]


def limited_app(mode_app, strategy, prefix):
    app, ext = mode_app({"REDIS_KEY_PREFIX": prefix, "REDIS_CLIENT_NAME": "limited-web"})
    with app.app_context():
        limiter = flask_limiter.Limiter(
            lambda: "client-1", app=app, strategy=strategy, **limiter_storage(ext))

    @app.get("/search")
    @limiter.limit("2/minute")
    def search():
        return "results"

    return app, ext, limiter


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
def test_a_limit_holds_across_two_app_servers(mode_app, server_keys, strategy):
    prefix = f"shop-{uuid.uuid4().hex[:8]}:"
    first, ext, limiter = limited_app(mode_app, strategy, prefix)
    second, _, _ = limited_app(mode_app, strategy, prefix)
    codes = [app.test_client().get("/search").status_code for app in (first, second, first)]
    assert codes == [200, 200, 429]
    assert second.test_client().get("/search").status_code == 429
    with first.app_context():
        raw = ext.get_client(decode_responses=False)
        assert server_keys(f"{prefix}LIMITS:LIMITER/client-1/*")  # in the app's server
        connection = limiter._storage.get_connection()
        if ext.settings.mode != "cluster":
            assert connection.connection_pool is raw.connection_pool  # the app's pool
        else:  # limits' own client, with the app's settings
            names = {entry["name"] for node in connection.get_primaries()
                     for entry in connection.get_redis_connection(node).client_list()}
            assert "limited-web" in names
            node = connection.get_redis_connection(connection.get_primaries()[0])
            assert issubclass(node.connection_pool.connection_class, EventedConnection)


def test_limits_of_apps_with_other_key_prefixes_are_apart(mode_app):
    first, _, _ = limited_app(mode_app, "fixed-window", f"a-{uuid.uuid4().hex}:")
    second, _, _ = limited_app(mode_app, "fixed-window", f"b-{uuid.uuid4().hex}:")
    assert [first.test_client().get("/search").status_code for _ in range(3)] == [200, 200, 429]
    assert second.test_client().get("/search").status_code == 200


def test_cluster_credentials_stay_out_of_the_printed_options(make_app):
    """Flask-Limiter's `flask limiter config` prints the storage options."""
    app, ext = make_app({"REDIS_URL": "redis+cluster://app:s3cret-pw@127.0.0.1:1,127.0.0.1:2"})
    with app.app_context():
        storage = limiter_storage(ext)
    assert storage["storage_uri"] == "redis+cluster://127.0.0.1:1,127.0.0.1:2"
    assert "s3cret" not in repr(storage)
    provider = storage["storage_options"]["credential_provider"]
    assert provider.get_credentials() == ("app", "s3cret-pw")


def test_an_encrypted_keys_passphrase_is_not_printed_with_the_storage_options(make_app,
                                                                            tmp_path):
    """`flask limiter config` prints the storage options; on Cluster they
    carry the TLS options passed to CoreRedis(), ssl_password among them."""
    from flask_core_redis.integrations.limiter import limiter_storage

    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("not read before a connect\n")
    app, ext = make_app({"REDIS_URL": "rediss+cluster://127.0.0.1:1",
                         "REDIS_SSL_CA_CERTS": str(files["ca"]),
                         "REDIS_SSL_CERTFILE": str(files["cert"]),
                         "REDIS_SSL_KEYFILE": str(files["key"])},
                        ssl_password="key-s3cret-passphrase")
    with app.app_context():
        options = limiter_storage(ext)["storage_options"]
    assert "key-s3cret-passphrase" not in repr(options)
    assert options["ssl_password"]() == "key-s3cret-passphrase"  # what ssl calls
