"""The presence plugin's Lua scripts. Each runs on the keys ``online``,
``conns`` and ``sweep`` of one app, which share a hash tag (one Cluster slot),
and reads the server's clock.

A user's connections are packed into one hash field:
``<last active ms>|<connection>=<expiry ms>|...``."""

from __future__ import annotations

from ...plugin_api import NOW_MS, LuaScript

# Lua helpers. parse: packed field -> last active, {connection = expiry}.
# pack: drops expired connections -> packed field (nil if none live), latest expiry.
PACKING = """
local function parse(packed)
  local seen, conns = 0, {}
  if not packed then return seen, conns end
  for part in string.gmatch(packed, '[^|]+') do
    local eq = string.find(part, '=', 1, true)
    if eq then
      conns[string.sub(part, 1, eq - 1)] = tonumber(string.sub(part, eq + 1))
    else
      seen = tonumber(part)
    end
  end
  return seen, conns
end
local function pack(seen, conns)
  local parts, best = {string.format('%d', seen)}, 0
  for conn, expiry in pairs(conns) do
    if expiry > now then
      parts[#parts + 1] = conn .. '=' .. string.format('%d', expiry)
      if expiry > best then best = expiry end
    end
  end
  if best == 0 then return nil, 0 end
  return table.concat(parts, '|'), best
end
"""

# Files a user's connections (KEYS online, conns, sweep; ARGV[1] user, ARGV[2]
# how long offline users are remembered, ms), then sweeps and trims.
STORE = """
local packed, best = pack(now, conns)
if packed then
  redis.call('HSET', KEYS[2], ARGV[1], packed)
  redis.call('ZADD', KEYS[1], best, ARGV[1])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
local cursor = redis.call('GET', KEYS[3]) or '0'
local page = redis.call('HSCAN', KEYS[2], cursor, 'COUNT', 10)
for i = 1, #page[2], 2 do
  local gone_seen, gone_conns = parse(page[2][i + 1])
  if not pack(gone_seen, gone_conns) then
    redis.call('HDEL', KEYS[2], page[2][i])
    redis.call('ZADD', KEYS[1], gone_seen, page[2][i])
  end
end
redis.call('SET', KEYS[3], page[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
"""

# ARGV[3] connection, ARGV[4] ttl ms. Returns {1 if this connection was alive,
# 1 if the user was online through any connection}.
MARK_ONLINE = LuaScript(NOW_MS + PACKING + """
local seen, conns = parse(redis.call('HGET', KEYS[2], ARGV[1]))
local before = conns[ARGV[3]] or 0
local user_was_online = 0
for _, expiry in pairs(conns) do
  if expiry > now then user_was_online = 1 end
end
conns[ARGV[3]] = now + tonumber(ARGV[4])
""" + STORE + "return {before > now and 1 or 0, user_was_online}")

# ARGV[3] connection ('' = all). Returns the latest live expiry, 0 if offline.
MARK_OFFLINE = LuaScript(NOW_MS + PACKING + """
local seen, conns = parse(redis.call('HGET', KEYS[2], ARGV[1]))
if ARGV[3] == '' then conns = {} else conns[ARGV[3]] = nil end
""" + STORE + "return best")

# KEYS online; ARGV[1] users joined by NUL (one argument, however many users:
# packing and parsing 10,000 separate values would cost more than the lookup).
# Returns a string of '1'/'0', one per user.
ONLINE_MANY = LuaScript(NOW_MS + """
local users, start, text = {}, 1, ARGV[1]
while true do
  local stop = string.find(text, '\0', start, true)
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

# KEYS online. ARGV 'count' or 'list', offset, limit.
ONLINE_QUERY = LuaScript(NOW_MS + """
if ARGV[1] == 'count' then
  return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
end
return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now,
                  'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[3]))
""")

# KEYS online, conns; ARGV user. Last active (ms), or false if never seen.
LAST_SEEN = LuaScript(NOW_MS + PACKING + """
local packed = redis.call('HGET', KEYS[2], ARGV[1])
if packed then return string.format('%d', (parse(packed))) end
return redis.call('ZSCORE', KEYS[1], ARGV[1])
""")
