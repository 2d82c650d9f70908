"""A wrong password is not an outage: it fails at once, on every topology."""

import pytest
import redis

from .conftest import ACL_USER

pytestmark = pytest.mark.integration


def wrong_password_url(request, topology):
    if topology == "standalone":
        server = request.getfixturevalue("auth_server")
        return f"redis://{ACL_USER}:not-the-password@{server.address}"
    # These servers take any password for their default user; no other user exists.
    scheme, _, rest = request.getfixturevalue(topology).url.partition("://")
    return f"{scheme}://ghost:not-the-password@{rest}"


@pytest.mark.parametrize("topology", ["standalone", "sentinel", "cluster"])
def test_a_wrong_password_fails_at_once_without_retries(request, make_app, topology):
    app, ext = make_app({"REDIS_URL": wrong_password_url(request, topology),
                         "REDIS_MAX_RETRIES": 5})
    kinds = []
    with app.app_context():
        ext.events.subscribe(lambda event: kinds.append(event.kind))
        with pytest.raises(redis.AuthenticationError):
            ext.client.ping()
    assert "retry" not in kinds and kinds.count("error") >= 1
    result = app.test_cli_runner().invoke(args=["redis", "ping"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: AuthenticationError: ")
    assert len(result.output.splitlines()) == 1 and "not-the-password" not in result.output
