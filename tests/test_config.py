import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flask_core_redis import ConfigurationError
from flask_core_redis.config import KEYS, key_table, load_settings
from flask_core_redis.plugins import cache, otp, presence

CONFIGURATION_PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
#: A file that is there, for a TLS key whose file is read at start-up.
A_FILE = __file__


def load(config=None, environ=None, dotenv=None, prefix="REDIS"):
    return load_settings(prefix, config or {}, environ or {}, dotenv or {})


def test_defaults_match_the_original_module():
    settings = load()
    assert settings.mode == "standalone"
    assert settings.nodes == (("redis", 6379),)
    assert settings.connect_timeout_ms == 10000
    assert settings.max_retries == 3
    assert settings.decode_responses is True
    assert settings.socket_timeout is None


def test_url_wins_over_host_and_port():
    settings = load({"REDIS_URL": "redis://url-host:6400/3", "REDIS_HOST": "other",
                     "REDIS_PORT": 1})
    assert settings.nodes == (("url-host", 6400),)
    assert settings.db == 3


def test_keys_fill_in_what_the_url_leaves_out():
    settings = load({"REDIS_URL": "redis://h", "REDIS_DB": "5", "REDIS_PASSWORD": "pw",
                     "REDIS_USERNAME": "bob"})
    assert (settings.db, settings.username, settings.password) == (5, "bob", "pw")


def test_url_credentials_win_over_keys():
    settings = load({"REDIS_URL": "redis://u:from-url@h", "REDIS_PASSWORD": "from-key"})
    assert settings.password == "from-url"


def test_app_config_wins_over_environment_which_wins_over_dotenv():
    key = "REDIS_HOST"
    assert load({key: "cfg"}, {key: "env"}, {key: "dotenv"}).nodes[0][0] == "cfg"
    assert load({}, {key: "env"}, {key: "dotenv"}).nodes[0][0] == "env"
    assert load({}, {}, {key: "dotenv"}).nodes[0][0] == "dotenv"


def test_dotenv_file_in_the_working_directory_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("REDIS_URL=redis://from-dotenv:6390\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert load_settings("REDIS", {}, {}).nodes == (("from-dotenv", 6390),)


def test_a_dotenv_file_in_a_parent_folder_is_never_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("REDIS_URL=redis://attacker:6390\n")
    below = tmp_path / "one" / "two"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    assert load_settings("REDIS", {}, {}).nodes == (("redis", 6379),)


def test_node_lists_take_host_port_pairs_and_ipv6_in_brackets():
    assert load({"REDIS_SENTINELS": [("s1", 26379), ("s2", "26380")]}).nodes == (
        ("s1", 26379), ("s2", 26380))
    assert load({"REDIS_CLUSTER_NODES": "[::1]:7000,[::1]:7001"}).nodes == (
        ("::1", 7000), ("::1", 7001))
    assert load({"REDIS_HOST": "[::1]"}).nodes == (("::1", 6379),)
    assert load({"REDIS_URL": "redis://[::1]:6380"}).nodes == (("::1", 6380),)


def test_a_plugin_key_with_a_malformed_value_names_it(make_app, memory_url):
    with pytest.raises(ConfigurationError, match=r"plugin 'presence': REDIS_PRESENCE_TTL="
                                                 r"'--60' is invalid: expected an integer"):
        make_app({"REDIS_URL": memory_url, "REDIS_PRESENCE_TTL": "--60"})


def test_sentinel_and_cluster_keys_select_their_modes():
    sentinel = load({"REDIS_SENTINELS": "s1:26379, s2", "REDIS_SENTINEL_MASTER": "m",
                     "REDIS_SENTINEL_PASSWORD": "spw"})
    assert sentinel.mode == "sentinel"
    assert sentinel.nodes == (("s1", 26379), ("s2", 26379))
    assert (sentinel.sentinel_master, sentinel.sentinel_password) == ("m", "spw")
    cluster = load({"REDIS_CLUSTER_NODES": ["n1:7000", "n2:7001"]})
    assert cluster.mode == "cluster"
    assert cluster.nodes == (("n1", 7000), ("n2", 7001))


@pytest.mark.parametrize(("config", "ssl", "sentinel_ssl"), [
    ({"REDIS_URL": "rediss+sentinel://s/m"}, True, True),
    ({"REDIS_URL": "redis+sentinel://s/m"}, False, False),
    ({"REDIS_URL": "rediss+sentinel://s/m", "REDIS_SENTINEL_SSL": "no"}, True, False),
    ({"REDIS_URL": "redis+sentinel://s/m", "REDIS_SENTINEL_SSL": "yes"}, False, True),
    ({"REDIS_SENTINELS": "s", "REDIS_SSL": "on"}, True, True),
    ({"REDIS_CLUSTER_NODES": "n", "REDIS_SSL": "on"}, True, False),
    ({"REDIS_URL": "rediss+cluster://n"}, True, False),
])
def test_tls_to_the_sentinels_follows_the_data_nodes_unless_set(config, ssl, sentinel_ssl):
    settings = load(config)
    assert (settings.ssl, settings.sentinel_ssl) == (ssl, sentinel_ssl)


def test_prefix_selects_its_own_keys():
    settings = load({"CACHE_REDIS_URL": "redis://cache:6390", "REDIS_URL": "redis://x"},
                    prefix="CACHE_REDIS")
    assert settings.nodes == (("cache", 6390),)
    assert settings.prefix == "CACHE_REDIS"


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("False", False), ("1", True), ("off", False), (True, True)])
def test_booleans_accept_the_usual_words(value, expected):
    assert load({"REDIS_DECODE_RESPONSES": value}).decode_responses is expected


@pytest.mark.parametrize(("config", "complaint"), [
    ({"REDIS_PORT": "abc"}, r"REDIS_PORT='abc' is invalid: expected an integer from 1 to 65535"),
    ({"REDIS_PORT": 0}, r"REDIS_PORT=0 is invalid: expected an integer from 1 to 65535"),
    ({"REDIS_PORT": "65536"}, r"REDIS_PORT='65536' is invalid"),
    ({"REDIS_URL": "ftp://h"}, r"REDIS_URL='ftp://h' is invalid: unknown scheme ftp://"),
    ({"REDIS_URL": "redis+sentinel://s:1"}, r"REDIS_URL=.* needs the master name"),
    ({"REDIS_SENTINELS": " , "}, r"REDIS_SENTINELS=' , ' is invalid: the node list is empty"),
    ({"REDIS_CLUSTER_NODES": ""}, None),  # empty means unset: standalone
    ({"REDIS_CLUSTER_NODES": ","}, r"REDIS_CLUSTER_NODES=',' is invalid: the node list"),
    ({"REDIS_CONNECT_TIMEOUT": "-5"}, r"REDIS_CONNECT_TIMEOUT='-5' is invalid: expected a "
                                      r"positive number of milliseconds"),
    ({"REDIS_CONNECT_TIMEOUT": 0}, r"REDIS_CONNECT_TIMEOUT=0 is invalid"),
    ({"REDIS_SOCKET_TIMEOUT": "soon"}, r"REDIS_SOCKET_TIMEOUT='soon' is invalid"),
    ({"REDIS_MAX_RETRIES": -1}, r"REDIS_MAX_RETRIES=-1 is invalid: expected an integer >= 0"),
    ({"REDIS_MAX_RETRIES": "2.5"}, r"REDIS_MAX_RETRIES='2.5' is invalid"),
    ({"REDIS_DB": "-1"}, r"REDIS_DB='-1' is invalid"),
    ({"REDIS_DECODE_RESPONSES": "maybe"}, r"REDIS_DECODE_RESPONSES='maybe' is invalid: "
                                          r"expected a boolean"),
    ({"REDIS_SSL_CERT_REQS": "always"}, r"expected one of required, optional, none"),
    ({"REDIS_MEMORY_WARNING_RATIO": "1.5"}, r"REDIS_MEMORY_WARNING_RATIO='1.5' is invalid: "
                                            r"expected a number above 0 and at most 1"),
    ({"REDIS_CONNECT_TIMEOUT": "inf"}, r"REDIS_CONNECT_TIMEOUT='inf' is invalid"),
    ({"REDIS_PLUGINS": "cache; presence"}, r"REDIS_PLUGINS='cache; presence' is invalid"),
    ({"REDIS_SENTINELS": "s:1", "REDIS_CLUSTER_NODES": "n:2"}, r"both set; set only one"),
    ({"REDIS_CLUSTER_NODES": "n:1", "REDIS_DB": 2}, r"only database 0"),
    ({"REDIS_SSL": "1", "REDIS_SSL_CERTFILE": "/c.pem"},
     r"SSL_CERTFILE and REDIS_SSL_KEYFILE go together"),
    ({"REDIS_URL": "redis+cluster://n:1", "REDIS_SSL": "yes"}, r"REDIS_SSL asks for TLS, but "
                                                               r"the connection would be "
                                                               r"plain text"),
    ({"REDIS_URL": "redis://h", "REDIS_SSL": "true"}, r"use a rediss:// URL"),
    ({"REDIS_URL": "redis://h", "REDIS_SSL_CA_CERTS": "/ca.pem"}, r"REDIS_SSL_CA_CERTS asks"),
    ({"REDIS_SSL_CERT_REQS": "none"}, r"REDIS_SSL_CERT_REQS asks for TLS"),
    ({"REDIS_URL": "redis://h", "REDIS_SSL": "false"}, None),  # off, as the URL says
    ({"REDIS_URL": "rediss://h", "REDIS_SSL_CA_CERTS": A_FILE}, None),
    ({"REDIS_SSL": "true", "REDIS_SSL_CERT_REQS": "none"}, None),
    ({"REDIS_SENTINELS": "s:1", "REDIS_SSL": "yes"}, None),
    ({"REDIS_CLUSTER_NODES": "n:1", "REDIS_SSL": "yes", "REDIS_SSL_CA_CERTS": A_FILE}, None),
    ({"REDIS_URL": "redis+sentinel://s/m", "REDIS_SENTINEL_SSL": "yes",
      "REDIS_SSL_CA_CERTS": A_FILE}, None),  # TLS to the sentinels only
    ({"REDIS_URL": "redis+sentinel://s/m", "REDIS_SSL_CA_CERTS": "/ca.pem"},
     r"REDIS_SSL_CA_CERTS asks for TLS, but the connection would be plain text: use a "
     r"rediss:// URL \(rediss\+sentinel://"),
    ({"REDIS_URL": "redis+sentinel://s/m", "REDIS_SSL": "yes", "REDIS_SENTINEL_SSL": "yes"},
     r"REDIS_SSL asks for TLS, but the connection would be plain text"),
    ({"REDIS_URL": "rediss+cluster://n", "REDIS_SENTINEL_SSL": "true"},
     r"REDIS_SENTINEL_SSL asks for TLS to the sentinels, but cluster mode has none"),
    ({"REDIS_SSL": "true", "REDIS_SENTINEL_SSL": "yes"}, r"standalone mode has none"),
    ({"REDIS_URL": "rediss+cluster://n", "REDIS_SENTINEL_SSL": "false"}, None),
    ({"REDIS_URL": "rediss+sentinel://s/m", "REDIS_SSL_KEYFILE": "/k.pem"},
     r"SSL_CERTFILE and REDIS_SSL_KEYFILE go together"),
    ({"REDIS_SENTINEL_SSL": "sometimes"}, r"REDIS_SENTINEL_SSL='sometimes' is invalid: "
                                          r"expected a boolean"),
    ({"REDIS_DB": "--5"}, r"REDIS_DB='--5' is invalid: expected an integer >= 0, in ASCII"),
    ({"REDIS_DB": "\u00b2"}, r"REDIS_DB='\u00b2' is invalid"),  # a superscript 2
    ({"REDIS_MAX_RETRIES": "--1"}, r"REDIS_MAX_RETRIES='--1' is invalid"),
    ({"REDIS_PORT": "\u0663"}, r"REDIS_PORT='\u0663' is invalid: expected an integer from 1"),
    ({"REDIS_PORT": "+80"}, r"REDIS_PORT='\+80' is invalid"),
    ({"REDIS_URL": "redis://[::1"}, r"REDIS_URL='redis://\[::1' is invalid: brackets"),
    ({"REDIS_HOST": "redis://u:hunter2@h"}, r"REDIS_HOST='redis://u:\*\*\*@h' is invalid: "
                                            r"expected a host name"),
    ({"REDIS_HOST": "u:hunter2@h"}, r"REDIS_HOST='u:\*\*\*@h' is invalid"),
    ({"REDIS_SENTINELS": "u:hunter2@s1:26379"}, r"REDIS_SENTINELS='u:\*\*\*@s1:26379' is "
                                                r"invalid: .* is not a host name"),
    ({"REDIS_CLUSTER_NODES": "::1:7000"}, r"an IPv6 address goes in brackets"),
    ({"REDIS_CLUSTER_NODES": [("n1", 7000, 1)]}, r"is not a \(host, port\) pair"),
    ({"REDIS_SENTINELS": [("s1", "port")]}, r"REDIS_SENTINELS=<list of 1> is invalid: item 1: "
                                           r"the port is not an integer"),
    ({"REDIS_SENTINELS": ["s1:1", ("s2", 2, "pw")]}, r"item 2 is not a \(host, port\) pair"),
])
def test_bad_values_fail_with_key_value_and_what_is_accepted(config, complaint):
    if complaint is None:
        load(config)
        return
    with pytest.raises(ConfigurationError, match=complaint):
        load(config)


def test_errors_mask_passwords_in_urls():
    with pytest.raises(ConfigurationError) as caught:
        load({"REDIS_URL": "redis://user:hunter2@h:99999"})
    assert "hunter2" not in str(caught.value)
    assert "user:***@" in str(caught.value)


def test_repr_and_describe_mask_secrets():
    settings = load({"REDIS_URL": "redis://u:hunter2@h", "REDIS_SENTINEL_PASSWORD": "x9"})
    assert "hunter2" not in repr(settings)
    assert settings.describe()["password"] == "***"
    assert settings.describe()["sentinel_password"] == "***"
    assert "hunter2" not in str(settings.describe())


def test_the_configuration_reference_is_generated_from_the_key_tables():
    page = CONFIGURATION_PAGE.read_text()
    assert "```{config-keys} core" in page and "```{config-keys} plugins" in page
    plugin_keys = presence.CONFIG_KEYS + otp.CONFIG_KEYS + cache.CONFIG_KEYS
    suffixes = [key.suffix for key in KEYS + plugin_keys]
    assert len(set(suffixes)) == len(suffixes)
    for key in KEYS + plugin_keys:
        assert key.doc.endswith(".") and "\n" not in key.doc, key.suffix
    assert "| `REDIS_URL` |" in key_table()


@pytest.mark.parametrize("url", [
    "redis//:Sup3rSecret@cache.internal:6379/0",    # ':' missing after the scheme
    ":Sup3rSecret@cache.internal:6379",             # no scheme at all
    "redis://:Sup3r/Secret@cache.internal:6379/0",  # unencoded '/' in the password
    "redis://:Sup3r#Secret@cache.internal:6379/0",  # unencoded '#'
    "redis://:Sup3r?Secret@cache.internal:6379/0",  # unencoded '?'
    "redis://user:Sup3rSecret@cache.internal:63 79/0",
    "redis+sentinel://:Sup3r/Secret@s1,s2/mymaster",
])
def test_a_malformed_url_never_shows_its_password(url):
    with pytest.raises(ConfigurationError) as caught:
        load({"REDIS_URL": url})
    assert not [part for part in ("Sup3r", "Secret") if part in str(caught.value)]


@given(st.text(alphabet="QXZW/#?@:%[]", min_size=2))
@example("@QQ:Q/")  # an unencoded '@' and '/': the host part would start inside it
@example("[QQ]")  # brackets, which the URL parser reads as an IPv6 host anywhere
def test_no_fragment_of_a_password_reaches_the_error(password):
    url = f"redis://app:{password}@cache.internal:6379/0"
    try:
        load({"REDIS_URL": url})
    except ConfigurationError as error:
        fragments = {run for run in re.findall(r"[QXZW]{2,}", password)}
        assert not [run for run in fragments if run in str(error)], str(error)


@pytest.mark.parametrize("config", [
    {"REDIS_SENTINELS": "u:Sup3rSecret@s1:26379"},
    {"REDIS_SENTINELS": [("u:Sup3rSecret@s1", 26379)]},
    {"REDIS_CLUSTER_NODES": "redis://:Sup3rSecret@n1:7000"},
    {"REDIS_HOST": "Sup3rSecret@h"},
    {"REDIS_SENTINELS": [("h", 1), ("u:Sup3rSecret@h",)]},
    {"REDIS_SENTINELS": [("h", 26379, "Sup3rSecret")]},
    {"REDIS_CLUSTER_NODES": {"password": "Sup3rSecret", "host": "h"}},
])
def test_credentials_put_in_a_host_key_are_refused_and_never_shown(config):
    with pytest.raises(ConfigurationError) as caught:
        load(config)
    assert "Sup3r" not in str(caught.value) and "Secret" not in str(caught.value)


@given(key=st.sampled_from([key.suffix for key in KEYS]), value=st.text())
def test_every_value_of_every_key_parses_or_names_its_key(key, value):
    try:
        load({f"REDIS_{key}": value})
    except ConfigurationError as error:
        assert f"REDIS_{key}" in str(error)
