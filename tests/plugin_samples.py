"""Plugins used by the tests of the plugin system."""

from __future__ import annotations

import json

import click

from flask_core_redis import hookimpl


class RecordingPlugin:
    """Implements every hook and records what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    @hookimpl
    def core_redis_setup(self, app, context):
        self.calls.append(("setup", app.name))
        self.context = context

    @hookimpl
    def core_redis_client_created(self, context, client):
        self.calls.append(("client_created", client))
        assert context.client is not None  # asking for a client here must not deadlock

    @hookimpl
    def core_redis_connection_event(self, event):
        self.calls.append(("event", event.kind))

    @hookimpl
    def core_redis_commands(self, group):
        @group.command("recorder-hello")
        def hello():
            """Say hello."""
            click.echo("hello from the recorder")

    @hookimpl
    def core_redis_health(self):
        return {"ok": True, "calls": len(self.calls)}

    @hookimpl
    def core_redis_closing(self, context):
        self.calls.append(("closing", context.app_name))

    @hookimpl
    def core_redis_serializer(self):
        return TaggedJson()


class TaggedJson:
    """A serializer that leaves a visible mark in Redis."""

    def dumps(self, value):
        return "tagged:" + json.dumps(value)

    def loads(self, data):  # the cache hands over bytes
        return json.loads(data.removeprefix(b"tagged:"))


class BoomPlugin:
    @hookimpl
    def core_redis_setup(self, context):
        raise RuntimeError("cannot start without its own database")


class UnhealthyPlugin:
    @hookimpl
    def core_redis_health(self):
        raise RuntimeError("lost its marbles")


#: (hook, plugin name) for every hook call of the ordered samples, in call order.
CALLS: list[tuple[str, str]] = []


class OrderedSample:
    """Records each hook it answers under its name; supplies a serializer that
    marks values with that name."""

    name = "?"

    @hookimpl
    def core_redis_setup(self):
        CALLS.append(("setup", self.name))

    @hookimpl
    def core_redis_client_created(self):
        CALLS.append(("client_created", self.name))

    @hookimpl
    def core_redis_connection_event(self):
        CALLS.append(("connection_event", self.name))

    @hookimpl
    def core_redis_commands(self):
        CALLS.append(("commands", self.name))

    @hookimpl
    def core_redis_health(self):
        CALLS.append(("health", self.name))

    @hookimpl
    def core_redis_closing(self):
        CALLS.append(("closing", self.name))

    @hookimpl
    def core_redis_serializer(self):
        CALLS.append(("serializer", self.name))
        return NamedJson(self.name)


class AlphaSample(OrderedSample):
    name = "alpha"


class BetaSample(OrderedSample):
    name = "beta"


class NamedJson:
    """JSON prefixed with the name of the plugin that supplied it."""

    def __init__(self, name):
        self.name = name

    def dumps(self, value):
        return f"{self.name}|{json.dumps(value)}"

    def loads(self, data):  # the cache hands over bytes
        return json.loads(data.partition(b"|")[2])


class BrokenHookPlugin:
    """A typo in a hook: the AttributeError must reach the user, named."""

    @hookimpl
    def core_redis_client_created(self, client):
        client.no_such_method()


class WrapperPlugin:
    @hookimpl(wrapper=True)
    def core_redis_health(self):
        return (yield)


class WritingHealthPlugin:
    """Its health check writes, as a check that records when it last ran would."""

    @hookimpl
    def core_redis_health(self, context):
        context.client.set(context.key("health-probe"), "1")
        return {"wrote": True}
