"""The extension's OpenTelemetry instruments and spans, declared with the
attributes they may carry.

Every instrument and every span is declared with its attributes and, for
each, the values it may take: a set of words, ``bool``, or the names an
app declared (its cache namespaces, say). A value outside its set is
recorded as ``other``; an attribute not declared is a programming error
(a ValueError). So no key, user id, code or value can reach a metric or a
span, and each attribute has a bounded number of values, whatever the
callers pass.

With telemetry off (:data:`OFF`), instruments and spans are shared objects
whose methods do nothing, and :meth:`Span.traced` hands an operation
back unchanged: the cost of switching it off is one method call.

OpenTelemetry is imported only when telemetry is on: it is the ``otel``
extra's. Instruments are made once per process through the global meter
(``opentelemetry.metrics.get_meter``), so whatever SDK and exporter the
app sets up, before or after, receives them. A provider that raises is
warned of once per instrument or span, and the call it records goes on."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import operator
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from ..connection.operations import Operation
from ..errors import ConfigurationError

T = TypeVar("T")

logger = logging.getLogger("flask_core_redis")

#: Every instrument's and span's name starts with this.
NAMESPACE = "flask_core_redis"
#: The bucket boundaries of every histogram, in seconds: a Redis round trip
#: to a computation others wait for.
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
#: The most combinations of attribute values an instrument keeps checked.
SEEN_LIMIT = 256
#: What a value outside its attribute's declared set is recorded as.
OTHER = "other"

#: What an attribute may be: a set of words, ``bool``, or ``int``.
Allowed = Collection[str] | type[bool] | type[int]
#: Declared attributes: each name, and what its values may be.
Attributes = Mapping[str, Allowed]


def checked(name: str, declared: Attributes, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` with every value that is not allowed replaced by ``other``;
    a ValueError for an attribute ``name`` does not declare."""
    attributes: dict[str, Any] = {}
    for key, value in given.items():
        allowed = declared.get(key)
        if allowed is None:
            raise ValueError(f"{name} declares no attribute {key!r}: it declares "
                             f"{', '.join(sorted(declared)) or 'none'}")
        attributes[key] = _allowed(value, allowed)
    return attributes


def _allowed(value: Any, allowed: Allowed) -> Any:
    if allowed is bool:
        return value if isinstance(value, bool) else OTHER
    if allowed is int:
        return value if type(value) is int else OTHER
    return value if isinstance(value, str) and value in allowed else OTHER  # type: ignore[operator]


class Instrument:
    """A counter (:meth:`add` to it) or a histogram (:meth:`record` in it),
    with attributes given as keywords (names with a dot as
    ``**{"error.type": ...}``)."""

    __slots__ = ("_base", "_declared", "_seen", "name")

    def __init__(self, name: str, declared: Attributes, base: Mapping[str, Any]) -> None:
        #: The full name (``flask_core_redis.cache.requests``).
        self.name = name
        self._declared = declared
        self._base = dict(base)
        #: The checked attributes of each combination of values given, so a
        #: hot path checks each once (bounded: unknown values are ``other``).
        self._seen: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}

    def add(self, amount: float = 1, **attributes: Any) -> None:
        """Count ``amount`` (a counter; adding 0 records nothing)."""
        raise TypeError(f"{self.name} is a histogram: record() a value in it")

    def record(self, amount: float, **attributes: Any) -> None:
        """Record ``amount`` (a histogram, 0 included)."""
        raise TypeError(f"{self.name} is a counter: add() to it")

    def _final(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """``attributes`` checked, with the registration's: each combination
        of values given is checked once (up to ``SEEN_LIMIT`` of them)."""
        given = tuple(attributes.items())
        final = self._seen.get(given)
        if final is None:
            final = {**self._base, **checked(self.name, self._declared, attributes)}
            if len(self._seen) < SEEN_LIMIT:
                self._seen[given] = final
        return final


class _Histogram(Instrument):
    """A histogram, each value recorded through the SDK."""

    __slots__ = ("_record",)

    def __init__(self, name: str, record: Callable[[float, dict[str, Any]], None],
                 declared: Attributes, base: Mapping[str, Any]) -> None:
        super().__init__(name, declared, base)
        self._record = record

    def record(self, amount: float, **attributes: Any) -> None:
        """Record ``amount``, 0 included."""
        final = self._final(attributes)
        try:
            self._record(amount, final)
        except Exception:
            _provider_failed(self.name)


class _Tally(Instrument):
    """A counter kept as running totals by attributes, reported when the
    app's reader collects (an observable counter): counting costs a
    dictionary update under a lock, not a measurement through the SDK."""

    __slots__ = ("__weakref__", "_lock", "_totals")

    def __init__(self, name: str, declared: Attributes) -> None:
        super().__init__(name, declared, {})
        self._totals: dict[frozenset[tuple[str, Any]], float] = {}
        self._lock = threading.Lock()

    def add(self, amount: float = 1, **attributes: Any) -> None:
        """Count ``amount``; adding 0 records nothing."""
        if not amount:
            return
        key = frozenset(self._final(attributes).items())
        with self._lock:
            self._totals[key] = self._totals.get(key, 0) + amount

    def totals(self) -> list[tuple[float, dict[str, Any]]]:
        """Each total so far, with its attributes."""
        with self._lock:
            return [(total, dict(key)) for key, total in self._totals.items()]


class _OffInstrument(Instrument):
    __slots__ = ()

    def __init__(self) -> None:
        pass

    def add(self, amount: float = 1, **attributes: Any) -> None:
        """Nothing: telemetry is off."""

    def record(self, amount: float, **attributes: Any) -> None:
        """Nothing: telemetry is off."""


class Span:
    """A declared span: :meth:`traced` runs an operation in it, :meth:`note`
    sets its attributes from inside that operation."""

    __slots__ = ("_declared", "_telemetry", "name")

    def __init__(self, telemetry: Telemetry, name: str, declared: Attributes) -> None:
        self.name = name
        self._declared = declared
        self._telemetry = telemetry

    def traced(self, operation: Operation[T]) -> Operation[T]:
        """``operation`` run inside a new span of this name, current while it
        runs: the command spans of an instrumented redis-py nest under it.
        ``operation`` as it is while the app has set no tracer provider."""
        if not _tracing():
            return operation
        return self._traced(operation)

    def _traced(self, operation: Operation[T]) -> Operation[T]:
        from opentelemetry import context, trace

        try:
            span = self._telemetry.tracer().start_span(self.name,
                                                       attributes=self._telemetry.base)
        except Exception:
            _provider_failed(self.name)
            return (yield from operation)
        token = context.attach(trace.set_span_in_context(span))
        try:
            return (yield from operation)
        except BaseException as error:
            try:
                _failed(span, error)
            except Exception:
                _provider_failed(self.name)
            raise
        finally:
            context.detach(token)
            try:
                span.end()
            except Exception:
                _provider_failed(self.name)

    def note(self, **attributes: Any) -> None:
        """Set ``attributes`` on the current span, if it is one of this name's."""
        if not _tracing_on:  # no span was made
            return
        from opentelemetry import trace

        span = trace.get_current_span()
        if span.is_recording() and getattr(span, "name", self.name) == self.name:
            final = checked(self.name, self._declared, attributes)
            try:
                span.set_attributes(final)
            except Exception:
                _provider_failed(self.name)


class _OffSpan(Span):
    __slots__ = ()

    def __init__(self) -> None:
        pass

    def traced(self, operation: Operation[T]) -> Operation[T]:
        """``operation`` as it is: telemetry is off."""
        return operation

    def note(self, **attributes: Any) -> None:
        """Nothing: telemetry is off."""


_OFF_INSTRUMENT = _OffInstrument()
_OFF_SPAN = _OffSpan()


class _Observed:
    """One observable instrument's callbacks, one per registration, each
    dropped once it returns None; and how two of them that observe the
    same attributes combine (several apps of a process may share a config
    prefix, and so the attributes of their registrations)."""

    __slots__ = ("callbacks", "combine")

    def __init__(self, combine: Callable[[float, float], float]) -> None:
        self.callbacks: list[Callable[[], list[tuple[float, dict[str, Any]]] | None]] = []
        self.combine = combine


#: The observable instruments, by name: one instrument per process.
_observed: dict[str, _Observed] = {}
_made: dict[tuple[str, str], Any] = {}
_making = threading.Lock()


class Telemetry:
    """One registration's telemetry: its instruments and spans, each
    carrying ``registration`` (the config prefix). ``on`` False: every
    instrument and span does nothing (``OFF`` is such a one)."""

    def __init__(self, on: bool, registration: str = "") -> None:
        if on and importlib.util.find_spec("opentelemetry") is None:
            raise ConfigurationError(
                f"{registration}_OTEL is on, but the OpenTelemetry API is not installed: "
                "pip install 'flask-core-redis[otel]' (and the OpenTelemetry SDK)")
        #: Whether anything is recorded.
        self.on = on
        #: The attributes every measurement and span of this registration carries.
        self.base: dict[str, Any] = {"registration": registration} if on else {}

    def __repr__(self) -> str:
        return f"<Telemetry {'on' if self.on else 'off'} {self.base.get('registration', '')}>"

    def counter(self, name: str, unit: str, description: str,
                attributes: Attributes | None = None) -> Instrument:
        """A counter named ``flask_core_redis.<name>``, e.g. ``cache.requests``:
        kept as running totals in the process and reported when the app's
        reader collects, so that counting on a hot path costs next to
        nothing. The totals of registrations of one prefix are added up."""
        if not self.on:
            return _OFF_INSTRUMENT
        tally = _Tally(f"{NAMESPACE}.{name}", attributes or {})
        held = weakref.ref(tally)

        def observe() -> list[tuple[float, dict[str, Any]]] | None:
            counting = held()
            return None if counting is None else counting.totals()

        self.total(name, unit, description, observe, attributes)
        return tally

    def histogram(self, name: str, unit: str, description: str,
                  attributes: Attributes | None = None) -> Instrument:
        """A histogram named ``flask_core_redis.<name>``; in seconds (unit
        ``s``), with buckets from 0.5 ms to 10 s (``SECONDS_BUCKETS``)."""
        return self._histogram(name, unit, description, attributes)

    def gauge(self, name: str, unit: str, description: str,
              observe: Callable[[], Iterable[tuple[float, dict[str, Any]]] | None],
              attributes: Attributes | None = None, *,
              combine: Callable[[float, float], float] = operator.add) -> None:
        """An observable gauge named ``flask_core_redis.<name>``, read when the
        app's metric reader collects: ``observe()`` gives ``(value,
        attributes)`` pairs, checked against ``attributes``, or None once
        what it watches is gone (it is not called again). Registrations of
        one prefix (in several apps) may observe the same attributes: their
        values make one with ``combine``, by default added up."""
        self._observable("gauge", name, unit, description, observe, attributes, combine)

    def total(self, name: str, unit: str, description: str,
              observe: Callable[[], Iterable[tuple[float, dict[str, Any]]] | None],
              attributes: Attributes | None = None) -> None:
        """An observable counter named ``flask_core_redis.<name>``: as
        :meth:`gauge`, ``observe()`` giving running totals. For counts kept
        on a hot path as plain integers, which cost nothing to bump. The
        totals of registrations of one prefix are added up."""
        self._observable("total", name, unit, description, observe, attributes, operator.add)

    def _observable(self, kind: str, name: str, unit: str, description: str,
                    observe: Callable[[], Iterable[tuple[float, dict[str, Any]]] | None],
                    attributes: Attributes | None,
                    combine: Callable[[float, float], float]) -> None:
        if not self.on:
            return
        full = f"{NAMESPACE}.{name}"
        declared = attributes or {}

        def checked_observe() -> list[tuple[float, dict[str, Any]]] | None:
            observed = observe()
            if observed is None:
                return None
            return [(value, {**self.base, **checked(full, declared, given)})
                    for value, given in observed]

        with _making:
            observed = _observed.get(full)
            if observed is None:
                observed = _observed[full] = _Observed(combine)
                create = (_meter().create_observable_gauge if kind == "gauge"
                          else _meter().create_observable_counter)
                create(full, callbacks=[lambda options: _observations(full)],
                       unit=unit, description=description)
            observed.callbacks.append(checked_observe)

    def span(self, name: str, attributes: Attributes | None = None) -> Span:
        """A span named ``flask_core_redis.<name>``, e.g. ``cache.get_or_set``."""
        if not self.on:
            return _OFF_SPAN
        return Span(self, f"{NAMESPACE}.{name}", attributes or {})

    def tracer(self) -> Any:
        """The extension's tracer, from the global tracer provider (a proxy
        until the app sets one, which then serves it)."""
        tracer = _made.get(("tracer", NAMESPACE))
        if tracer is None:
            from opentelemetry import trace

            tracer = _made[("tracer", NAMESPACE)] = trace.get_tracer(NAMESPACE, _version())
        return tracer

    def _histogram(self, name: str, unit: str, description: str,
                   attributes: Attributes | None) -> Instrument:
        if not self.on:
            return _OFF_INSTRUMENT
        full = f"{NAMESPACE}.{name}"
        with _making:
            made = _made.get(("histogram", full))
            if made is None:
                made = _made[("histogram", full)] = _meter().create_histogram(
                    full, unit=unit, description=description,
                    explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        return _Histogram(full, made.record, attributes or {}, self.base)


_tracing_on = False
_NO_GLOBAL = object()


def _tracing() -> bool:
    """Whether the app set a tracer provider (once set, it stays: spans
    before then would go nowhere, and cost a span's making). Read from the
    API's module global while none is set (a hot path: a global's read,
    not ``get_tracer_provider()``'s proxy)."""
    global _tracing_on
    if not _tracing_on:
        from opentelemetry import trace

        # The API's global (opentelemetry-api 1.x); the public call where
        # a release has none.
        provider = getattr(trace, "_TRACER_PROVIDER", _NO_GLOBAL)
        if provider is _NO_GLOBAL:
            provider = trace.get_tracer_provider()
        _tracing_on = provider is not None and not isinstance(
            provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    return _tracing_on


#: The instruments and spans whose provider raised, each warned of once.
_provider_failures: set[str] = set()


def _provider_failed(name: str) -> None:
    """Warn, once for ``name``, that the OpenTelemetry provider raised
    (called from an ``except`` block): what it recorded goes on without."""
    if name not in _provider_failures:
        _provider_failures.add(name)
        logger.warning("telemetry: %s: the OpenTelemetry provider raised; "
                       "the call goes on without it", name, exc_info=True)


def _failed(span: Any, error: BaseException) -> None:
    """Mark ``span`` as ended by ``error``: its type only, as its message
    may quote a key or an id."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", type(error).__name__)
    span.set_status(Status(StatusCode.ERROR))


def _observations(name: str) -> list[Any]:
    """What instrument ``name``'s callbacks observe now, the values of
    several for the same attributes combined; those whose registration is
    gone are dropped. It takes no lock: the SDK calls it holding its own,
    which registering an instrument (under ``_making``) takes too."""
    from opentelemetry.metrics import Observation

    observed = _observed.get(name)
    if observed is None:  # an instrument of a provider the process has replaced
        return []
    combined: dict[frozenset[tuple[str, Any]], float] = {}
    for callback in list(observed.callbacks):
        values = callback()
        if values is None:
            with contextlib.suppress(ValueError):  # another reader dropped it first
                observed.callbacks.remove(callback)
            continue
        for value, attributes in values:
            key = frozenset(attributes.items())
            combined[key] = value if key not in combined else observed.combine(combined[key],
                                                                               value)
    return [Observation(value, dict(key)) for key, value in combined.items()]


def _meter() -> Any:
    from opentelemetry import metrics

    return metrics.get_meter(NAMESPACE, _version())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flask-core-redis")
    except PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "0"


#: Telemetry that is off: what a registration without ``OTEL`` has.
OFF = Telemetry(False)
