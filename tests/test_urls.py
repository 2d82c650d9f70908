import pytest

from flask_core_redis.config.urls import UrlError, mask_url, parse_url


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://cache.internal", {"mode": "standalone", "nodes": (("cache.internal", 6379),)}),
    ("redis://h:6380/2", {"nodes": (("h", 6380),), "db": 2, "ssl": False}),
    ("rediss://h:6390", {"nodes": (("h", 6390),), "ssl": True}),
    ("redis://alice:p%40ss@h/1", {"username": "alice", "password": "p@ss", "db": 1}),
    ("redis://:only-pass@h", {"username": None, "password": "only-pass"}),
    ("redis://[::1]:7000", {"nodes": (("::1", 7000),)}),
    ("unix:///run/redis.sock?db=3", {"unix_socket": "/run/redis.sock", "db": 3}),
    ("redis+sentinel://s1,s2:26380/primary",
     {"mode": "sentinel", "nodes": (("s1", 26379), ("s2", 26380)),
      "sentinel_master": "primary", "db": None}),
    ("redis+sentinel://u:p@s1:1/primary/4", {"db": 4, "username": "u", "password": "p"}),
    ("redis+cluster://n1:7000,n2:7001",
     {"mode": "cluster", "nodes": (("n1", 7000), ("n2", 7001))}),
    ("memory://", {"mode": "memory", "memory_name": ""}),
    ("memory://demo/2", {"mode": "memory", "memory_name": "demo", "db": 2}),
])
def test_accepted_urls_parse_into_their_parts(url, expected):
    parsed = parse_url(url)
    for name, value in expected.items():
        assert getattr(parsed, name) == value, name


@pytest.mark.parametrize(("url", "complaint"), [
    ("http://h", "unknown scheme http://"),
    ("localhost:6379", "unknown scheme"),
    ("redis://h:notaport", "'notaport' in 'h:notaport' is not a number"),
    ("redis://h:70000", "port 70000 in 'h:70000' is out of range"),
    ("redis://h:0", "out of range"),
    ("redis://a:1,b:2", "exactly one host"),
    ("redis://h/x", "database number 'x'"),
    ("redis://h/1/2", "unexpected path segment"),
    ("redis://h?ssl_cert_reqs=none", "query parameters are not accepted"),
    ("redis+sentinel://s1:26379", "needs the master name"),
    ("redis+sentinel://s1:26379/", "needs the master name"),
    ("redis+cluster://", "node list is empty"),
    ("redis+cluster://n1:7000/1", "only database 0"),
    ("unix://", "needs the socket path"),
    ("unix:///s.sock?timeout=1", "unknown query parameter"),
])
def test_rejected_urls_say_what_is_wrong(url, complaint):
    with pytest.raises(UrlError, match=complaint.replace("?", r"\?").replace("(", r"\(")):
        parse_url(url)


@pytest.mark.parametrize(("url", "masked"), [
    ("redis://u:secret@h:1/0", "redis://u:***@h:1/0"),
    ("redis://:secret@h", "redis://:***@h"),
    ("redis+sentinel://u:secret@a:1,b:2/m", "redis+sentinel://u:***@a:1,b:2/m"),
    ("redis://h:1", "redis://h:1"),
    ("not a url", "not a url"),
])
def test_mask_url_hides_only_the_password(url, masked):
    assert mask_url(url) == masked
