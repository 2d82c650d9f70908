"""The presence plugin's Lua scripts: the changes that must read before they
write (open, close, sweep) and the bulk lookup. Each runs on the keys of one
shard (:mod:`.shards`), which share a hash tag, so it is atomic and valid in
Cluster. A heartbeat needs no script (see
:meth:`.store.PresencePlugin.heartbeat`).

Times are milliseconds of the caller's clock, passed in (``now``), because a
heartbeat, plain ``ZADD``s, cannot read the server's.

The changes run once per call (``once_prelude``: the first two keys and
arguments are the ones ``once_call`` gives): a second run after a lost reply
would answer "already offline" for the close that made the user offline, and
no one would announce it. An open's reply without users gone offline and a
close's reply are common replies, remembered in a few bytes each.

A user with only the default connection (``DEFAULT``, the original
one-connection API) has no ``held`` key: the user's mark in ``users`` is that
connection's expiry. Any other connection moves the default one into
``held``."""

from __future__ import annotations

from ...plugin_api import LuaScript, once_prelude

#: The connection of callers that name none; short, because it is stored.
DEFAULT_CONNECTION = "~"
#: From this many connections, a user's set of them is kept as a skip list
#: (O(log n) per heartbeat) rather than a flat list (a scan, by default up to
#: 128 entries: zset-max-listpack-entries).
SKIP_LIST_FROM = 16

# sweep(users, present, seen, held prefix, now, limit, keep ms): the users whose mark
# has passed are looked at, at most `limit`; those with a connection still
# alive get its expiry as their mark, the others are dropped, their mark kept
# as last seen, and returned. Last-seen entries older than `keep ms` go.
SWEEP_FUNCTION = """
local function sweep(users, present, seen, prefix, now, limit, keep_ms)
  local gone = {}
  local due = redis.call('ZRANGEBYSCORE', users, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #due, 2 do
    local user, held = due[i], prefix .. due[i]
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
    local latest = redis.call('ZRANGE', held, -1, -1, 'WITHSCORES')[2]
    if latest then
      redis.call('ZADD', users, latest, user)
    else
      redis.call('ZREM', users, user)
      redis.call('SREM', present, user)
      redis.call('ZADD', seen, due[i + 1], user)
      gone[#gone + 1] = user
    end
  end
  redis.call('ZREMRANGEBYSCORE', seen, '-inf', now - keep_ms)
  return gone
end
"""

# KEYS (once_call's two), users, present, seen, held. ARGV (once_call's two),
# user, connection, now, expiry, cap, held prefix, sweep limit, keep ms. Opens
# (or renews) one connection, then sweeps a little. Returns {this connection
# was alive, the user was online, {users gone offline}}, or {-1} if the user
# already holds `cap` other live connections. A user whose mark had passed
# without a sweep is among the users gone: announced offline before the caller
# announces them online. The common replies: the user came online, opened one
# more connection, renewed one.
OPEN = LuaScript(once_prelude("{0, 0, {}}", "{0, 1, {}}", "{1, 1, {}}")
                 + SWEEP_FUNCTION + f"""
local users, present, seen, held = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local user, conn, now, expiry = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local mark = tonumber(redis.call('ZSCORE', users, user) or '0')
local online, alive
if redis.call('EXISTS', held) == 0 and conn == '{DEFAULT_CONNECTION}' then
  online = mark > now
  alive = online
  redis.call('ZADD', users, expiry, user)
else
  if mark > now and redis.call('EXISTS', held) == 0 then
    redis.call('ZADD', held, mark, '{DEFAULT_CONNECTION}')
  end
  redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  online = redis.call('EXISTS', held) == 1  -- a live connection (a mark may lag a beat)
  alive = redis.call('ZSCORE', held, conn) ~= false
  if not alive and redis.call('ZCARD', held) >= tonumber(ARGV[7]) then return {{-1}} end
  redis.call('ZADD', held, expiry, conn)
  if not alive and redis.call('ZCARD', held) == {SKIP_LIST_FROM} then
    -- Redis keeps a small sorted set as a flat list, which a renewal scans;
    -- one member too long for that turns it into a skip list, for good.
    redis.call('ZADD', held, '-inf', string.rep('\\0', 65))
    redis.call('ZREM', held, string.rep('\\0', 65))
  end
  redis.call('ZADD', users, redis.call('ZRANGE', held, -1, -1, 'WITHSCORES')[2], user)
end
redis.call('SADD', present, user)
local gone = sweep(users, present, seen, ARGV[8], now, tonumber(ARGV[9]), tonumber(ARGV[10]))
if mark > 0 and not online then table.insert(gone, 1, user) end
return remember({{alive and 1 or 0, online and 1 or 0, gone}})
""")

# KEYS (once_call's two), users, present, seen, held. ARGV (once_call's two),
# user, connection ('' = all), now. Returns 1 if the user is still online, 0 if
# this made them offline, -1 if they were not online (closed or swept before).
CLOSE = LuaScript(once_prelude("1", "0") + f"""
local users, present, seen, held = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local user, conn, now = ARGV[3], ARGV[4], tonumber(ARGV[5])
local mark = redis.call('ZSCORE', users, user)
if not mark then return -1 end
mark = tonumber(mark)
local latest = nil
if redis.call('EXISTS', held) == 0 then
  if conn ~= '' and conn ~= '{DEFAULT_CONNECTION}' and mark > now then return 1 end
else
  -- UNLINK frees a large set outside the server's main thread: O(1) here
  if conn == '' then redis.call('UNLINK', held) else redis.call('ZREM', held, conn) end
  redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  latest = redis.call('ZRANGE', held, -1, -1, 'WITHSCORES')[2]
end
if latest then
  redis.call('ZADD', users, latest, user)
  return remember(1)
end
redis.call('ZREM', users, user)
redis.call('SREM', present, user)
redis.call('ZADD', seen, math.min(mark, now), user)
return remember(0)
""")

# KEYS (once_call's two), users, present, seen. ARGV (once_call's two), now, limit,
# keep ms, held prefix. The users gone offline.
SWEEP = LuaScript(once_prelude() + SWEEP_FUNCTION + """
local gone = sweep(KEYS[3], KEYS[4], KEYS[5], ARGV[6], tonumber(ARGV[3]),
                   tonumber(ARGV[4]), tonumber(ARGV[5]))
if #gone > 0 then return remember(gone) end
return gone
""")

# KEYS users, present. ARGV users joined by NUL (one argument, however many
# users: packing and parsing 10,000 separate values would cost more than the
# lookup), now. Returns a string of '1'/'0', one per user.
#
# A user is online if in `present` (SMISMEMBER) and not among the users whose
# mark has passed without a sweep (few, while servers sweep). ZMSCORE would
# answer alone, but formats every score as a double: on Redis 7.0 that costs
# ten times the membership test. With more such users than users asked
# about, it is ZMSCORE after all.
ONLINE_MANY = LuaScript("""
local text, now, find, sub = ARGV[1], tonumber(ARGV[2]), string.find, string.sub
local users, n, start = {}, 0, 1
while true do
  local stop = find(text, '\\0', start, true)
  n = n + 1
  if not stop then users[n] = sub(text, start) break end
  users[n] = sub(text, start, stop - 1)
  start = stop + 1
end
local flags = {}
if redis.call('ZCOUNT', KEYS[1], '-inf', now) > n then
  for first = 1, n, 1000 do
    local last = math.min(first + 999, n)
    local marks = redis.call('ZMSCORE', KEYS[1], unpack(users, first, last))
    for i = first, last do
      local mark = marks[i - first + 1]
      flags[i] = (mark and tonumber(mark) > now) and '1' or '0'
    end
  end
else
  local lapsed = {}
  for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    lapsed[user] = true
  end
  for first = 1, n, 1000 do
    local last = math.min(first + 999, n)
    local present = redis.call('SMISMEMBER', KEYS[2], unpack(users, first, last))
    for i = first, last do
      flags[i] = (present[i - first + 1] == 1 and not lapsed[users[i]]) and '1' or '0'
    end
  end
end
return table.concat(flags)
""")
