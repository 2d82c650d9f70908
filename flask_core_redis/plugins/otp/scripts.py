"""The OTP plugin's Lua scripts. Each runs on keys that share the phone's hash
tag (one Cluster slot) and reads the server's clock."""

from __future__ import annotations

from ...plugin_api import NOW_MS, LuaScript

# KEYS code, cooldown, sends. ARGV digest, ttl, cooldown, max sends, window,
# grace (all ms but max sends), nonce.
ISSUE = LuaScript(NOW_MS + """
local wait = redis.call('PTTL', KEYS[2])
if wait > 0 then return {'cooldown', wait} end
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return {'too_many', tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[3], now, now .. ':' .. ARGV[7])
redis.call('PEXPIRE', KEYS[3], window)
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'exp', now + tonumber(ARGV[2]), 'attempts', 0)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[6]))
return {'ok', 0}
""")

# KEYS code. ARGV digest, max attempts, ttl for an unknown phone, grace (ms).
# An unknown phone gets a record no code matches, so that it answers exactly
# as a wrong code does, attempts and lock-out included.
CHECK = LuaScript(NOW_MS + """
local max = tonumber(ARGV[2])
local record = redis.call('HMGET', KEYS[1], 'digest', 'exp', 'attempts')
if not record[1] then
  record = {'', tostring(now + tonumber(ARGV[3])), '0'}
  redis.call('HSET', KEYS[1], 'digest', record[1], 'exp', record[2], 'attempts', 0)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]))
end
if now >= tonumber(record[2]) then return {'expired', 0} end
local attempts = tonumber(record[3])
if attempts >= max then return {'locked', 0} end
if record[1] ~= '' and record[1] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {'ok', max - attempts}
end
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts >= max then return {'locked', 0} end
return {'invalid', max - attempts}
""")
