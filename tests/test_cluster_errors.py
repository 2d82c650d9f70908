"""Cluster's error translation (as_redis_errors): an error the
app is handling when it calls the client is no part of the client's error."""

import pytest
import redis
from redis.exceptions import RedisClusterException

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("handled", [redis.ConnectionError("the app's own earlier failure"),
                                     redis.AuthenticationError("the app's own login")])
def test_a_misuse_inside_an_except_block_stays_a_misuse(make_app, cluster, handled):
    """A command that names no key is a misuse (RedisClusterException), never
    retried. Called while the app handles an error of its own, redis-py 6.4
    and 8.1 chain that error as the misuse's __context__, which
    as_redis_errors reads as the node's error: the misuse became a
    ConnectionError retried as an outage, or the app's own error re-raised."""
    app, ext = make_app({"REDIS_URL": cluster.url, "REDIS_MAX_RETRIES": 2})
    with app.app_context():
        client = ext.client
        kinds = []
        ext.events.subscribe(lambda event: kinds.append(event.kind))
        try:
            raise handled
        except redis.RedisError:
            with pytest.raises(RedisClusterException, match="Missing key"):
                client.execute_command("GET")
        assert "retry" not in kinds
