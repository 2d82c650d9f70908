"""Default ``@cached`` keys: distinct arguments never share a key."""

import contextlib
import datetime
import decimal
import enum
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_core_redis.plugins.cache.decorator import cached_through
from flask_core_redis.plugins.cache.keys import canonical


class Color(enum.Enum):
    RED = 1
    BLUE = "blue"


class Size(enum.IntEnum):
    SMALL = 1


class KeyRecorder:
    """Stands in for the cache: records the key the decorator asks for."""

    def get_or_set(self, key, compute, ttl=None, *, namespace="default"):
        self.key = key


def key_of(func, *args, **kwargs):
    """The default key ``@cached`` gives to this call of ``func``."""
    recorder = KeyRecorder()
    cached_through(lambda: recorder, 60, None, "default")(func)(*args, **kwargs)
    return recorder.key


@pytest.fixture
def cache(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        yield ext.cache


CONFUSABLE = [
    ({1: "x"}, {"1": "x"}),
    ((1, 2), [1, 2]),
    (datetime.date(2024, 5, 1), repr(datetime.date(2024, 5, 1))),
    (datetime.date(2024, 5, 1), "2024-05-01"),
    (datetime.datetime(2024, 5, 1), datetime.date(2024, 5, 1)),
    (1, True),
    (1, 1.0),
    (0.0, -0.0),
    (None, "None"),
    ("a", b"a"),
    ({1, 2}, frozenset({1, 2})),
    ([], {}),
    (Color.RED, 1),
    (Size.SMALL, 1),
    (decimal.Decimal("1"), 1),
    (["a", "b"], ["a,b"]),
    (["ab"], ["a", "b"]),
    ({"a": 1, "b": 2}, {"a": {"b": 2}}),
]


@pytest.mark.parametrize(("first", "second"), CONFUSABLE, ids=repr)
def test_values_that_look_alike_get_their_own_results(cache, first, second):
    calls = []

    @cache.cached(ttl=60)
    def echo(value):
        calls.append(value)
        return repr(value)

    assert echo(first) == repr(first)
    assert echo(second) == repr(second)
    assert echo(first) == repr(first)
    assert len(calls) == 2


def test_dicts_with_keys_of_several_types_are_encoded(cache):
    @cache.cached(ttl=60)
    def echo(value):
        return repr(value)

    for value in ({(1, 2): "x"}, {1: "a", "b": 2}, {None: 1, 2.5: [{"k": (3,)}]}):
        assert echo(value) == repr(value)


def test_equal_dicts_and_sets_share_a_key_whatever_their_order():
    assert key_of(echo, {"a": 1, 2: "b"}) == key_of(echo, {2: "b", "a": 1})
    assert key_of(echo, {3, "x", 1}) == key_of(echo, {"x", 1, 3})


def test_an_argument_without_a_canonical_form_is_a_type_error_naming_it(cache):
    class User:
        id = 7

    @cache.cached(ttl=60)
    def profile(user_id, filters):
        return "never"

    with pytest.raises(TypeError, match=r"@cached .*profile: argument 'filters' at "
                                        r"\[1\]\['who'\] is a User, .*pass key= to cached\(\)"):
        profile(1, ["ok", {"who": User()}])

    @cache.cached(ttl=60, key="profile:{user.id}")
    def by_key(user):
        return "works with key="

    assert by_key(User()) == "works with key="


# The property ------------------------------------------------------------

hashable_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["\ud800", "a\udfffb", "", ";", "s1:a", "i1;"]),
    st.binary(max_size=8), st.dates(),
    st.datetimes(timezones=st.none() | st.builds(
        datetime.timezone, st.timedeltas(min_value=datetime.timedelta(hours=-23),
                                         max_value=datetime.timedelta(hours=23)))),
    st.times(), st.timedeltas(),
    st.decimals(allow_nan=False), st.uuids(), st.sampled_from([*Color, *Size]),
)
scalars = hashable_scalars | st.builds(str, hashable_scalars) | st.builds(repr, hashable_scalars)
hashables = st.recursive(hashable_scalars, lambda inner: st.tuples(inner, inner)
                         | st.frozensets(inner, max_size=3), max_leaves=6)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(hashables, inner, max_size=3) | st.sets(hashables, max_size=3)
    | st.frozensets(hashables, max_size=3),
    max_leaves=10)


def tagged(value):
    """``value`` with its type written beside it at every level, so that two
    values are tagged alike only if they are equal and of the same types."""
    kind = type(value).__qualname__
    if isinstance(value, list | tuple):
        return kind, tuple(map(tagged, value))
    if isinstance(value, dict):
        return kind, frozenset((tagged(key), tagged(item)) for key, item in value.items())
    if isinstance(value, set | frozenset):
        return kind, frozenset(map(tagged, value))
    if isinstance(value, float):
        return kind, value.hex()  # NaN equals itself here; 0.0 and -0.0 differ
    return kind, value


def confusions(value):
    """Values an encoding could mistake for ``value``."""
    found = [str(value), repr(value)]
    if isinstance(value, list | tuple):
        found += [list(value), tuple(value)]
    if isinstance(value, dict):
        found.append({str(key): item for key, item in value.items()})
    if type(value) in (bool, int, float):
        for convert in (int, float, bool):
            with contextlib.suppress(OverflowError, ValueError):  # NaN, inf, huge ints
                found.append(convert(value))
    if isinstance(value, datetime.date):
        found.append(value.isoformat())
    return found


def echo(value):
    pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_distinct_argument_values_give_distinct_keys(data):
    first = data.draw(values)
    second = data.draw(values | st.sampled_from(confusions(first)))
    if tagged(first) != tagged(second):
        assert key_of(echo, first) != key_of(echo, second)


@settings(max_examples=100, deadline=None)
@given(values, values)
def test_arguments_are_told_apart_by_their_names_and_positions(first, second):
    def pair(a, b):
        pass

    if tagged(first) != tagged(second):
        assert key_of(pair, first, second) != key_of(pair, second, first)


# A reader of the encoding: if every value reads back as itself, no two values
# share an encoding.

ENUMS = {f"{kind.__module__}.{kind.__qualname__}": kind for kind in (Color, Size)}
TERMINATED = {
    "i": lambda body: int(body, 16), "f": float.fromhex,
    "W": datetime.datetime.fromisoformat, "D": datetime.date.fromisoformat,
    "H": datetime.time.fromisoformat, "M": decimal.Decimal,
    "R": lambda body: datetime.timedelta(*map(int, body.split(","))),
    "U": lambda body: uuid.UUID(hex=body),
}
COLLECTIONS = {"l": list, "t": tuple, "S": set, "Z": frozenset}


def read(text):
    value, end = read_one(text, 0)
    assert end == len(text), f"left over: {text[end:]!r}"
    return value


def read_one(text, at):
    tag, at = text[at], at + 1
    if tag == "E":
        return read_enum(text, at)
    if tag in "NTF":
        return {"N": None, "T": True, "F": False}[tag], at
    if tag in TERMINATED:
        end = text.index(";", at)
        return TERMINATED[tag](text[at:end]), end + 1
    colon = text.index(":", at)
    count, at = int(text[at:colon]), colon + 1
    if tag == "s":
        return text[at:at + count], at + count
    if tag == "b":
        return bytes.fromhex(text[at:at + 2 * count]), at + 2 * count
    items = []
    for _ in range(2 * count if tag == "d" else count):
        item, at = read_one(text, at)
        items.append(item)
    if tag == "d":
        return dict(zip(items[::2], items[1::2], strict=True)), at
    return COLLECTIONS[tag](items), at


def read_enum(text, at):
    kind, at = read_one(text, at)
    name, at = read_one(text, at)
    return ENUMS[kind][name], at


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_encoding_reads_back_as_its_value(value):
    assert tagged(read(canonical(value))) == tagged(value)


def test_uuid_and_time_values_are_keys_too():
    value = {"id": uuid.UUID(int=5), "at": datetime.time(12, 30), "for": datetime.timedelta(1)}
    assert key_of(echo, value).startswith(f"{__name__}.echo:")
