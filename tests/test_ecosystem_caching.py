"""Flask-Caching's RedisCache on the app's bytes client: pickled values
round-trip over requests on every mode, in the app's server."""

import pytest

from .servers import refusing_default_port, require_package

flask_caching = require_package("flask_caching")

pytestmark = [pytest.mark.ecosystem, pytest.mark.usefixtures("refuse_default_port")]


def cached_app(mode_app):
    app, ext = mode_app()
    with app.app_context():
        cache = flask_caching.Cache(app, config={
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_HOST": ext.get_client(decode_responses=False),
            "CACHE_KEY_PREFIX": f"{ext.settings.key_prefix}cache:",
        })
    calls = []

    @app.get("/price/<item>")
    @cache.cached(timeout=60)
    def price(item):
        calls.append(item)
        return {"item": item, "price": {"tea": 2.5}.get(item, 1), "seen": len(calls)}

    return app, ext, cache, calls


def test_a_cached_view_is_computed_once_and_stored_in_the_apps_server(mode_app, server_keys):
    app, ext, _, calls = cached_app(mode_app)
    web = app.test_client()
    first = web.get("/price/tea").get_json()
    assert [web.get("/price/tea").get_json() for _ in range(3)] == [first] * 3
    assert calls == ["tea"]
    with app.app_context():
        raw = ext.get_client(decode_responses=False)
        prefix = ext.settings.key_prefix
        keys = list(raw.scan_iter(match=f"{prefix}cache:*"))
        assert keys and all(0 < raw.ttl(key) <= 60 for key in keys)
    assert server_keys(f"{prefix}cache:*") == {key.decode() for key in keys}


def test_pickled_values_round_trip(mode_app):
    app, _, cache, _ = cached_app(mode_app)
    value = {"bytes": b"\x80\xff\x00", "set": {1, 2}, "text": "héllo"}
    with app.app_context():
        assert cache.set("a", value)
        assert cache.get("a") == value
        assert cache.cache.inc("hits") == 1 and cache.cache.inc("hits") == 2


def test_get_many_and_set_many(mode_app):
    """Keys in several hash slots: on Cluster, set_many works and get_many
    fails (MGET must name keys of one slot), unless the keys share a hash
    tag."""
    app, ext, cache, _ = cached_app(mode_app)
    many = {f"user:{n}": n for n in range(6)}
    with app.app_context():
        assert cache.set_many(many) == list(many)
        assert all(cache.get(key) == value for key, value in many.items())
        tagged = {f"{{users}}:{n}": n for n in range(6)}
        cache.set_many(tagged)
        assert cache.get_many(*tagged) == list(tagged.values())
        if ext.settings.mode != "cluster":
            assert cache.get_many(*many) == list(many.values())
            return
        from redis.exceptions import RedisClusterException

        with pytest.raises(RedisClusterException, match="same key slot"):
            cache.get_many(*many)


def test_without_the_client_rediscache_would_use_localhost(make_app, memory_url):
    """What the recipe's comment says (checked without connecting anywhere)."""
    app, _ = make_app({"REDIS_URL": memory_url})
    cache = flask_caching.Cache(app, config={"CACHE_TYPE": "RedisCache"})
    kwargs = cache.cache._write_client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"]) == ("localhost", 6379)


def test_a_fallback_to_localhost_is_caught_even_when_swallowed(make_app, memory_url):
    """What refuse_default_port, used by every test here, catches: a view
    cached on a RedisCache without a client answers as if nothing happened."""
    app, _ = make_app({"REDIS_URL": memory_url})
    cache = flask_caching.Cache(app, config={"CACHE_TYPE": "RedisCache"})

    @app.get("/")
    @cache.cached()
    def home():
        return "home"

    with refusing_default_port() as attempts:
        assert app.test_client().get("/").data == b"home"
    assert attempts and attempts[0][1] == 6379
