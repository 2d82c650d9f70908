"""Default ``@cached`` keys: distinct arguments never share a key."""

import contextlib
import datetime
import decimal
import enum
import pathlib
import uuid
import zoneinfo

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


PARIS, BERLIN = zoneinfo.ZoneInfo("Europe/Paris"), zoneinfo.ZoneInfo("Europe/Berlin")
PLUS_ONE = datetime.timezone(datetime.timedelta(hours=1))
NEW_YEAR = datetime.datetime(2024, 1, 1)

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
    # One offset in January, not in July: (when + 180 days) differs.
    (NEW_YEAR.replace(tzinfo=PARIS), NEW_YEAR.replace(tzinfo=PLUS_ONE)),
    (NEW_YEAR.replace(tzinfo=PARIS), NEW_YEAR.replace(tzinfo=BERLIN)),
    (NEW_YEAR.replace(tzinfo=PLUS_ONE),
     NEW_YEAR.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=1), "CET"))),
    (NEW_YEAR.replace(tzinfo=datetime.timezone.utc), NEW_YEAR.replace(tzinfo=None)),
    (NEW_YEAR, NEW_YEAR.replace(fold=1)),
    (datetime.time(12, tzinfo=PARIS), datetime.time(12)),  # no offset in its isoformat
    (datetime.time(12, tzinfo=PARIS), datetime.time(12, tzinfo=BERLIN)),
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


class Plus2(datetime.tzinfo):
    def utcoffset(self, when):
        return datetime.timedelta(hours=2)


class Zone(zoneinfo.ZoneInfo):
    pass


def keyless_paris():
    """Europe/Paris read from its file: a ZoneInfo without a key."""
    for folder in zoneinfo.TZPATH:
        path = pathlib.Path(folder, "Europe", "Paris")
        if path.exists():
            with path.open("rb") as tzfile:
                return zoneinfo.ZoneInfo.from_file(tzfile)
    pytest.fail(f"no Europe/Paris in {zoneinfo.TZPATH}")


def test_a_datetime_whose_tzinfo_has_no_known_identity_is_a_type_error(cache):
    @cache.cached(ttl=60)
    def later(when):
        return "never"

    for zone in (Plus2(), keyless_paris(), Zone("Europe/Paris")):
        with pytest.raises(TypeError, match=r"@cached .*later: argument 'when' at \[0\]"
                                            r"\.tzinfo is a (Plus2|ZoneInfo|Zone), .*pass key="):
            later([NEW_YEAR.replace(tzinfo=zone)])


# The property ------------------------------------------------------------

offsets = st.timedeltas(min_value=datetime.timedelta(hours=-23),
                        max_value=datetime.timedelta(hours=23))
zones = st.one_of(
    st.none(), st.builds(datetime.timezone, offsets),
    st.builds(datetime.timezone, offsets, st.text(min_size=1, max_size=6)),
    st.timezones(), st.sampled_from([PARIS, BERLIN, PLUS_ONE, datetime.timezone.utc]))
hashable_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["\ud800", "a\udfffb", "", ";", "s1:a", "i1;"]),
    st.binary(max_size=8), st.dates(), st.datetimes(timezones=zones), st.times(timezones=zones),
    st.timedeltas(),
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
    if isinstance(value, datetime.datetime | datetime.time):  # == compares instants
        return kind, value.isoformat(), value.fold, zone_identity(value.tzinfo)
    return kind, value


def zone_identity(zone):
    """What tells two tzinfos apart: a ZoneInfo's key, a timezone's offset and name."""
    if isinstance(zone, zoneinfo.ZoneInfo):
        return "ZoneInfo", zone.key
    if zone is None:
        return None
    return type(zone).__qualname__, zone.utcoffset(None), zone.tzname(None)


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
    if isinstance(value, datetime.datetime | datetime.time):
        found.append(value.replace(fold=1 - value.fold))
        found += [value.replace(tzinfo=zone) for zone in [None, *same_offset_zones(value)]]
    return found


def same_offset_zones(moment):
    """tzinfos that give ``moment`` the offset it has, with other identities."""
    offset = moment.utcoffset()
    if offset is None:
        return [PARIS, PLUS_ONE]
    return [datetime.timezone(offset), datetime.timezone(offset, "x"),
            *(zone for zone in (PARIS, BERLIN) if moment.replace(tzinfo=zone).utcoffset()
              == offset)]


def echo(value):
    pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_distinct_argument_values_give_distinct_keys(data):
    first = data.draw(values)
    second = data.draw(values | st.sampled_from(confusions(first)))
    if tagged(first) != tagged(second):
        assert key_of(echo, first) != key_of(echo, second)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_datetime_or_time_under_another_tzinfo_gets_another_key(data):
    """An offset is not a zone: Europe/Paris and UTC+01:00 agree in January only."""
    moment = data.draw(st.datetimes(timezones=zones) | st.times(timezones=zones))
    other = moment.replace(tzinfo=data.draw(zones | st.sampled_from(same_offset_zones(moment))))
    if tagged(moment) != tagged(other):
        assert key_of(echo, moment) != key_of(echo, other)


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
    "D": datetime.date.fromisoformat, "M": decimal.Decimal,
    "R": lambda body: datetime.timedelta(*map(int, body.split(","))),
    "U": lambda body: uuid.UUID(hex=body),
}
COLLECTIONS = {"l": list, "t": tuple, "S": set, "Z": frozenset}
MOMENTS = {"W": datetime.datetime.fromisoformat, "H": datetime.time.fromisoformat}


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
    if tag in MOMENTS:
        return read_moment(MOMENTS[tag], text, at)
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


def read_moment(parse, text, at):
    """A datetime or time: its ISO form, its fold, and its tzinfo's identity."""
    end = text.index(";", at)
    moment, fold, at = parse(text[at:end]), int(text[end + 1]), end + 2
    tag, at = text[at], at + 1
    if tag == "-":
        zone = None
    elif tag == "z":
        key, at = read_one(text, at)
        zone = zoneinfo.ZoneInfo(key)
    else:
        offset, at = read_one(text, at)
        name, at = read_one(text, at)
        zone = datetime.timezone(offset, name)
    return moment.replace(tzinfo=zone, fold=fold), at


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
