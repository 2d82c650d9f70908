"""The presence plugin's Lua scripts: the changes that must read before they
write (open, close, sweep) and the bulk lookup. Each runs on the keys of one
shard (:mod:`.shards`), which share a hash tag, so it is atomic and valid in
Cluster. A heartbeat needs no script: it is one transaction of plain commands
(see :meth:`.store.PresencePlugin.heartbeat`).

Times are milliseconds of the caller's clock, passed in (``now``), because
the heartbeat, a plain ``ZADD``, cannot read the server's.

A user with only the default connection (``DEFAULT``, the original
one-connection API) has no ``held`` key: the user's mark in ``users`` is that
connection's expiry. Any other connection moves the default one into
``held``."""

from __future__ import annotations

from ...plugin_api import LuaScript

#: The connection of callers that name none; short, because it is stored.
DEFAULT_CONNECTION = "~"

# sweep(users, seen, held prefix, now, limit, keep ms): the users whose mark
# has passed are looked at, at most `limit`; those with a connection still
# alive get its expiry as their mark, the others are dropped, their mark kept
# as last seen, and returned. Last-seen entries older than `keep ms` go.
SWEEP_FUNCTION = """
local function sweep(users, seen, prefix, now, limit, keep_ms)
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
      redis.call('ZADD', seen, due[i + 1], user)
      gone[#gone + 1] = user
    end
  end
  redis.call('ZREMRANGEBYSCORE', seen, '-inf', now - keep_ms)
  return gone
end
"""

# KEYS users, seen, held. ARGV user, connection, now, expiry, cap, held prefix,
# sweep limit, keep ms. Opens (or renews) one connection, then sweeps a little.
# Returns {this connection was alive, the user was online, {users gone}}, or
# {-1} when the user already holds `cap` other live connections.
OPEN = LuaScript(SWEEP_FUNCTION + f"""
local users, seen, held = KEYS[1], KEYS[2], KEYS[3]
local user, conn, now, expiry = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local mark = tonumber(redis.call('ZSCORE', users, user) or '0')
local online, alive = mark > now, false
local solo = redis.call('EXISTS', held) == 0
if solo and conn == '{DEFAULT_CONNECTION}' then
  alive = online
  redis.call('ZADD', users, expiry, user)
else
  if solo and online then redis.call('ZADD', held, mark, '{DEFAULT_CONNECTION}') end
  redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  alive = redis.call('ZSCORE', held, conn) ~= false
  if not alive and redis.call('ZCARD', held) >= tonumber(ARGV[5]) then return {{-1}} end
  redis.call('ZADD', held, expiry, conn)
  redis.call('ZADD', users, redis.call('ZRANGE', held, -1, -1, 'WITHSCORES')[2], user)
end
local gone = sweep(users, seen, ARGV[6], now, tonumber(ARGV[7]), tonumber(ARGV[8]))
return {{alive and 1 or 0, online and 1 or 0, gone}}
""")

# KEYS users, seen, held. ARGV user, connection ('' = all), now. Returns 1 if
# the user is still online, 0 if this made them offline, -1 if they were not
# online (closed or swept before).
CLOSE = LuaScript(f"""
local users, seen, held = KEYS[1], KEYS[2], KEYS[3]
local user, conn, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local mark = redis.call('ZSCORE', users, user)
if not mark then return -1 end
mark = tonumber(mark)
local latest = nil
if redis.call('EXISTS', held) == 0 then
  if conn ~= '' and conn ~= '{DEFAULT_CONNECTION}' and mark > now then return 1 end
else
  if conn == '' then redis.call('DEL', held) else redis.call('ZREM', held, conn) end
  redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  latest = redis.call('ZRANGE', held, -1, -1, 'WITHSCORES')[2]
end
if latest then
  redis.call('ZADD', users, latest, user)
  return 1
end
redis.call('ZREM', users, user)
redis.call('ZADD', seen, math.min(mark, now), user)
return 0
""")

# KEYS users, seen. ARGV now, limit, keep ms, held prefix. The users gone.
SWEEP = LuaScript(SWEEP_FUNCTION + """
return sweep(KEYS[1], KEYS[2], ARGV[4], tonumber(ARGV[1]), tonumber(ARGV[2]),
             tonumber(ARGV[3]))
""")

# KEYS users. ARGV users joined by NUL (one argument, however many users:
# packing and parsing 10,000 separate values would cost more than the
# lookup), now. Returns a string of '1'/'0', one per user.
ONLINE_MANY = LuaScript("""
local users, start, text, now = {}, 1, ARGV[1], tonumber(ARGV[2])
while true do
  local stop = string.find(text, '\\0', start, true)
  if not stop then users[#users + 1] = string.sub(text, start) break end
  users[#users + 1] = string.sub(text, start, stop - 1)
  start = stop + 1
end
local flags = {}
for first = 1, #users, 1000 do
  local last = math.min(first + 999, #users)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(users, first, last))
  for i = first, last do
    local score = scores[i - first + 1]
    flags[i] = (score and tonumber(score) > now) and '1' or '0'
  end
end
return table.concat(flags)
""")
