"""What the README says of python-socketio's own RedisManager and Sentinel."""

import pytest

from .servers import require_package

require_package("socketio")

pytestmark = [pytest.mark.ecosystem, pytest.mark.usefixtures("refuse_default_port")]


def test_python_socketio_reads_sentinel_urls_in_its_own_grammar():
    from socketio.redis_manager import parse_redis_sentinel_url

    theirs = "redis+sentinel://h1:26379,h2:26379/0/mymaster"
    assert parse_redis_sentinel_url(theirs) == (
        [("h1", 26379), ("h2", 26379)], "mymaster", {"db": 0})
    with pytest.raises(ValueError):  # this project's form: master, then db
        parse_redis_sentinel_url("redis+sentinel://h1:26379,h2:26379/mymaster/0")
    with pytest.raises(ValueError):  # a sentinel without its port
        parse_redis_sentinel_url("redis+sentinel://h1,h2:26379/0/mymaster")
