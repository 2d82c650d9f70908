"""Where the cache keeps things in Redis, and the commands that touch them.

Keys (under ``KEY_PREFIX``) of namespace ``ns`` share the hash tag
``{cache:ns}``, so one command or script reads and writes them together, in
Cluster too: ``{cache:ns}#version`` is the namespace's version,
``{cache:ns}:<key>`` an entry, ``{cache:ns}#lock:<key>`` its recompute lock.

Every read asks redis-py not to decode the reply: entries are bytes whatever
``DECODE_RESPONSES`` says, so a serializer may write any bytes."""

from __future__ import annotations

from typing import Any

from redis.client import NEVER_DECODE

from ...plugin_api import Command, LuaScript, Operation

_RAW = {NEVER_DECODE: True}


class Names:
    """The key names of one entry: its namespace's version, itself, its lock."""

    __slots__ = ("entry", "lock", "version")

    def __init__(self, version: str, entry: str, lock: str) -> None:
        self.version, self.entry, self.lock = version, entry, lock

    def all(self) -> list[str]:
        return [self.version, self.entry, self.lock]


class NamespaceKeys:
    """The key names of one namespace, formatted once: its version, and the
    prefixes of its entries and their locks."""

    __slots__ = ("entry_prefix", "lock_prefix", "version")

    def __init__(self, tag: str) -> None:
        self.version = f"{tag}#version"
        self.entry_prefix = f"{tag}:"
        self.lock_prefix = f"{tag}#lock:"

    def entry(self, key: str) -> str:
        return f"{self.entry_prefix}{key}"

    def names(self, key: str) -> Names:
        return Names(self.version, self.entry(key), f"{self.lock_prefix}{key}")


def mget(*names: str) -> Command:
    """MGET, the replies as bytes."""
    return Command("MGET", *names, **_RAW)


def run_script(script: LuaScript, keys: list[str], args: list[Any]) -> Operation[Any]:
    """Run ``script``, the reply as bytes."""
    return (yield from script.operation(keys, args, **_RAW))


# KEYS version, then entries. ARGV ttl ms, then one body per entry. Stamps each
# body with the namespace's current version, read in the same atomic step.
SET_MANY = LuaScript("""
local version = redis.call('GET', KEYS[1]) or '0'
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], version .. ':' .. ARGV[i], 'PX', ARGV[1])
end
return version
""")

# KEYS version, entry, lock. ARGV token, lock ms. Takes the lock if it is free,
# and says what is there: {taken (1 or 0), version, entry or ''}. A lock that
# already holds the token is taken, for the full lock time again: the call ran
# before and its reply was lost, and the retry must not leave the caller
# waiting on its own lock.
CLAIM = LuaScript("""
local taken = redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
if taken == 0 and redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  taken = 1
end
return {taken, redis.call('GET', KEYS[1]) or '0', redis.call('GET', KEYS[2]) or ''}
""")

# KEYS version, entry, lock. ARGV ttl ms, the version read before computing,
# token, body. Releases our lock, and stores the body only if the namespace was
# not invalidated while it was computed: 1 if stored, else 0.
STORE_COMPUTED = LuaScript("""
if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[2] .. ':' .. ARGV[4], 'PX', ARGV[1])
return 1
""")

# KEYS lock. ARGV token. Deletes the lock only if it is still ours.
UNLOCK = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

# KEYS lock. ARGV token, lock ms. Extends the lock only if it is still ours.
RENEW = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
""")
