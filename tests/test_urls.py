from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

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
     {"mode": "cluster", "nodes": (("n1", 7000), ("n2", 7001)), "ssl": False}),
    ("rediss+sentinel://s1/primary/2", {"mode": "sentinel", "ssl": True, "db": 2,
                                        "nodes": (("s1", 26379),)}),
    ("REDISS+CLUSTER://:pw@n1:7000,n2", {"mode": "cluster", "ssl": True, "password": "pw",
                                         "nodes": (("n1", 7000), ("n2", 6379))}),
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
    ("redis://h:notaport", "port 'notaport' in 'h:notaport' is invalid; expected an "
                           "integer from 1 to 65535"),
    ("redis://h:70000", "port '70000' in 'h:70000' is invalid"),
    ("redis://h:0", "port '0' in 'h:0' is invalid"),
    ("redis://h:+80", "port '\\+80' in 'h:\\+80' is invalid"),
    ("redis://h:\u0663", "port '\u0663' in 'h:\u0663' is invalid"),  # an Arabic-Indic 3
    ("redis://h/\u0663", "database number '\u0663' is not a non-negative integer in ASCII"),
    ("redis://h/\u00b2", "database number"),  # a superscript 2
    ("redis://::1", "an IPv6 address goes in brackets, as in \\[::1\\]:6379"),
    ("redis://[::1", "brackets are for an IPv6 host"),
    ("redis+cluster://[::1:7000", "brackets are for an IPv6 host"),
    ("redis://app:4242#x@host", "percent-encode"),  # not host app, port 4242
    ("redis://:S3cr#3tPw@host:6379/0", "percent-encode"),
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


@pytest.mark.parametrize(("nodes", "expected"), [
    ("[::1]:7000,h:7001", (("::1", 7000), ("h", 7001))),
    ("[fe80::1]", (("fe80::1", 26379),)),
])
def test_ipv6_node_lists_use_brackets(nodes, expected):
    from flask_core_redis.config.urls import parse_nodes

    assert parse_nodes(nodes, 26379) == expected


@pytest.mark.parametrize(("url", "masked"), [
    ("redis://u:secret@h:1/0", "redis://u:***@h:1/0"),
    ("redis://:secret@h", "redis://:***@h"),
    ("redis+sentinel://u:secret@a:1,b:2/m", "redis+sentinel://u:***@a:1,b:2/m"),
    ("redis://h:1", "redis://h:1"),
    ("not a url", "not a url"),
])
def test_mask_url_hides_only_the_password(url, masked):
    assert mask_url(url) == masked


FRAME = "redis://app:@cache.internal:6379/0"


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1))
def test_percent_encoded_passwords_round_trip_and_masking_shows_no_piece(password):
    assume(not any(password[i:i + 4] in FRAME for i in range(len(password))))
    url = f"redis://app:{quote(password, safe='')}@cache.internal:6379/0"
    assert parse_url(url).password == password
    masked = mask_url(url)
    assert masked == "redis://app:***@cache.internal:6379/0"
    encoded = quote(password, safe="")
    assert not [encoded[i:i + 4] for i in range(max(len(encoded) - 3, 1))
                if encoded[i:i + 4] in masked]


HOSTS = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"))
SECRETS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1)


@given(user=SECRETS, password=SECRETS, host=HOSTS, port=st.integers(1, 65535),
       db=st.integers(0, 15), master=SECRETS, scheme=st.sampled_from(
           ["redis", "rediss", "redis+sentinel", "redis+cluster", "rediss+sentinel",
            "rediss+cluster"]))
def test_every_field_of_a_url_round_trips(user, password, host, port, db, master, scheme):
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    topology = scheme.partition("+")[2]
    path = {"": f"/{db}", "cluster": "", "sentinel": f"/{quote(master, safe='')}/{db}"}[topology]
    parsed = parse_url(f"{scheme}://{credentials}@{host}:{port}{path}")
    assert (parsed.username, parsed.password) == (user, password)
    assert parsed.nodes == ((host.strip("[]"), port),)
    assert parsed.db == (None if topology == "cluster" else db)
    assert parsed.ssl == scheme.startswith("rediss")
    if topology == "sentinel":
        assert parsed.sentinel_master == master
