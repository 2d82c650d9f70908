"""get_or_set under races: invalidation during a computation, a computation
that fails or outlives its lock, many callers at once."""

import pytest


@pytest.fixture
def cache(mode_app):
    app, ext = mode_app()
    with app.app_context():
        yield ext.cache


def test_a_value_computed_before_an_invalidation_is_not_stored_after_it(cache):
    def compute_then_see_the_data_change():
        value = "computed from the old data"
        cache.invalidate_namespace("profiles")  # the data changed meanwhile
        return value

    assert cache.get_or_set("p", compute_then_see_the_data_change,
                            namespace="profiles") == "computed from the old data"
    assert cache.get("p", "miss", namespace="profiles") == "miss"
    assert cache.get_or_set("p", lambda: "new", namespace="profiles") == "new"
    assert cache.get("p", namespace="profiles") == "new"
