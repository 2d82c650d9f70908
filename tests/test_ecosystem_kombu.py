"""The app's Redis as a kombu broker (Celery's transport): messages
round-trip through the real kombu on one server (ACL, requirepass, TLS, a
database other than 0) and behind Sentinel (TLS on either side or both), and
land in the app's server."""

import uuid
from urllib.parse import quote

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_core_redis import ConfigurationError, CoreRedis
from flask_core_redis.integrations.kombu_broker import kombu_broker

from .conftest import ACL_PASSWORD, ACL_USER, REQUIRE_PASSWORD
from .servers import require_package

require_package("kombu")

pytestmark = [pytest.mark.integration, pytest.mark.ecosystem,
              pytest.mark.usefixtures("refuse_default_port")]


def broker_of(make_app, config):
    app, ext = make_app(config)
    with app.app_context():
        return kombu_broker(ext)


def round_trip(broker, server, db):
    """Put a message through one kombu connection, see it in ``server``'s
    ``db``, read it through another."""
    queue = f"jobs-{uuid.uuid4().hex[:8]}"
    with broker.connection() as producer, producer.SimpleQueue(queue) as outbox:
        outbox.put({"job": "resize", "id": 7})
    with server.client(db=db) as admin:
        assert admin.llen(queue) == 1
    with broker.connection() as consumer, consumer.SimpleQueue(queue) as inbox:
        message = inbox.get(timeout=10)
        message.ack()
        assert message.payload == {"job": "resize", "id": 7}


def test_one_server_with_a_database(make_app, redis_server):
    broker = broker_of(make_app, {"REDIS_URL": f"redis://{redis_server.address}/3"})
    assert broker.url == f"redis://{redis_server.address}/3"
    round_trip(broker, redis_server, 3)


@pytest.mark.parametrize("user", [None, ACL_USER])
def test_passwords_and_acl_users(make_app, auth_server, user):
    password = ACL_PASSWORD if user else REQUIRE_PASSWORD
    broker = broker_of(make_app, {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": auth_server.port,
                                  "REDIS_USERNAME": user, "REDIS_PASSWORD": password})
    round_trip(broker, auth_server, 0)
    assert password not in repr(broker) and password not in str(broker)
    assert "***" in repr(broker)


def test_a_password_with_url_characters(make_app, own_redis_server):
    password = "p@ss:/w;rd%#?é"
    with own_redis_server.client() as admin:
        admin.config_set("requirepass", password)
    own_redis_server.client_kwargs["password"] = password
    broker = broker_of(make_app, {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": own_redis_server.port,
                                  "REDIS_PASSWORD": password})
    round_trip(broker, own_redis_server, 0)
    assert repr(broker) == (f"KombuBroker(url='redis://:***@{own_redis_server.address}/0', "
                            "transport_options={}, ssl=None)")


@settings(max_examples=200, deadline=None)
@given(username=st.none() | st.text(min_size=1), password=st.none() | st.text(min_size=1),
       sentinel=st.booleans())
def test_kombu_reads_back_the_credentials_and_repr_masks_the_password(username, password,
                                                                       sentinel):
    """Any user name and password, written into kombu's URL, are what kombu
    reads from it; the repr shows neither password."""
    from kombu.connection import Connection

    app = Flask("kombu-property")
    url = "redis+sentinel://10.0.0.1,10.0.0.2/main/1" if sentinel else "redis://10.0.0.1:6380/1"
    app.config.update(REDIS_URL=url, REDIS_USERNAME=username, REDIS_PASSWORD=password,
                      REDIS_SENTINEL_PASSWORD=password, REDIS_DISABLED_PLUGINS="otp")
    ext = CoreRedis(app)
    with app.app_context():
        broker = kombu_broker(ext)
    for url in broker.url.split(";"):
        parsed = Connection(url, transport_options=broker.transport_options)
        assert (parsed.password, parsed.virtual_host) == (password, "1")
        assert parsed.userid == (username if password is not None or username else None)
    if password is not None:
        masked = broker.url.replace(f":{quote(password, safe='')}@", ":***@")
        assert masked.count(":***@") == len(broker.url.split(";"))
        assert repr(broker).startswith(f"KombuBroker(url={masked!r}, ")
        assert str(broker) == repr(broker)
        if sentinel:
            assert "'sentinel_kwargs': {'password': '***'}" in repr(broker)


def test_tls_with_a_client_certificate(make_app, tls_server, tls_files):
    broker = broker_of(make_app, {
        "REDIS_URL": f"rediss://{tls_server.address}/0",
        "REDIS_SSL_CA_CERTS": str(tls_files.ca), "REDIS_SSL_CERTFILE": str(tls_files.client),
        "REDIS_SSL_KEYFILE": str(tls_files.client)})
    assert broker.url.startswith("rediss://")
    assert broker.celery_config()["broker_use_ssl"]["ssl_cert_reqs"] == "required"
    round_trip(broker, tls_server, 0)


def test_sentinel(make_app, sentinel):
    broker = broker_of(make_app, {"REDIS_URL": sentinel.url + "/2"})
    assert broker.url.startswith("sentinel://") and broker.url.count(";sentinel://") == 2
    assert broker.transport_options == {"master_name": sentinel.master_name}
    round_trip(broker, sentinel.process_on(sentinel.master_port()), 2)


def test_sentinel_over_tls(make_app, tls_sentinel, tls_files):
    broker = broker_of(make_app, {"REDIS_URL": tls_sentinel.url + "/1",
                                  **tls_files.config()})
    assert broker.url.startswith("sentinel://")
    assert broker.transport_options["sentinel_kwargs"]["ssl"] is True
    assert broker.celery_config()["broker_use_ssl"]["ssl_cert_reqs"] == "required"
    round_trip(broker, tls_sentinel.process_on(tls_sentinel.master_port()), 1)


def test_sentinel_with_tls_on_one_side_only(make_app, mixed_sentinel, tls_files):
    """kombu reaches the sentinels as REDIS_SENTINEL_SSL says and the data
    nodes as the URL says, each side apart."""
    broker = broker_of(make_app, {"REDIS_URL": mixed_sentinel.url,
                                  "REDIS_SENTINEL_SSL": mixed_sentinel.tls_sentinels,
                                  **tls_files.config()})
    sentinel_kwargs = broker.transport_options.get("sentinel_kwargs", {})
    assert sentinel_kwargs.get("ssl", False) is mixed_sentinel.tls_sentinels
    assert (broker.ssl is not None) is mixed_sentinel.tls_data
    round_trip(broker, mixed_sentinel.process_on(mixed_sentinel.master_port()), 0)


def test_sentinel_credentials_go_where_kombu_reads_them(make_app):
    broker = broker_of(make_app, {
        "REDIS_URL": "redis+sentinel://app:data-pw@10.0.0.1,10.0.0.2:26380/cache/1",
        "REDIS_SENTINEL_PASSWORD": "sentinel-pw"})
    assert broker.url == ("sentinel://app:data-pw@10.0.0.1:26379/1;"
                          "sentinel://app:data-pw@10.0.0.2:26380/1")
    assert broker.celery_config() == {
        "broker_url": broker.url,
        "broker_transport_options": {"master_name": "cache",
                                     "sentinel_kwargs": {"password": "sentinel-pw"}}}
    assert "pw" not in repr(broker)


@pytest.mark.parametrize(("url", "why"), [
    ("redis+cluster://127.0.0.1:7000", "does not support Redis Cluster"),
    ("memory://broker", "a worker is another process"),
])
def test_cluster_and_memory_are_refused_with_the_reason(make_app, url, why):
    with pytest.raises(ConfigurationError, match=why):
        broker_of(make_app, {"REDIS_URL": url})


def test_kombu_alone_would_not_check_the_certificate_on_rediss():
    """Why kombu_broker adds the TLS options (no connection is made)."""
    import ssl

    from kombu.connection import Connection

    connection = Connection("rediss://127.0.0.1:1/0")  # it only logs a warning
    assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_NONE}
