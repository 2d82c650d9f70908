"""The OTP plugin's Lua scripts. Each runs on keys that share the phone's hash
tag (one Cluster slot) and reads the server's clock.

Each runs once per call, however often it is sent: when a reply is lost to
the socket timeout, the core's retry policy sends the script again, and a
second run would count a second attempt, or use a second send and then answer
"cooldown" for the code the first run stored. So every call carries a nonce
(``once_call``), and a script that changed something remembers its reply
under ``<tag>:reply:<nonce hex>``; the same call sent again returns that
reply. The scripts declare no common replies (``once_prelude``): each phone
has a hash tag of its own, so a record would sit alone in a key, no smaller
than the reply's own key."""

from __future__ import annotations

from ...plugin_api import NOW_MS, LuaScript, once_prelude


def _once(body: str) -> LuaScript:
    """A script run once per call (``once_prelude``: KEYS[1], KEYS[2], ARGV[1]
    and ARGV[2], the call's nonce, are ``once_call``'s). It returns
    ``remember({status, number})`` where it changed something; a reply with no
    effect may as well be computed again."""
    return LuaScript(NOW_MS + once_prelude() + body)


# KEYS (once_call's two), code, cooldown, sends. ARGV remember, nonce, digest, ttl,
# cooldown, max sends, window, grace (all ms but max sends), the code's number of digits.
ISSUE = _once("""
local wait = redis.call('PTTL', KEYS[4])
if wait > 0 then return {'cooldown', wait} end
local window = tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - window)
if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[6]) then
  local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  return {'too_many', tonumber(oldest[2]) + window - now}
end
local nonce = string.format(string.rep('%02x', #ARGV[2]), string.byte(ARGV[2], 1, -1))
redis.call('ZADD', KEYS[5], now, now .. ':' .. nonce)  -- a member per send: its nonce in hex
redis.call('PEXPIRE', KEYS[5], window)
if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[4], '1', 'PX', ARGV[5]) end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'digest', ARGV[3], 'exp', now + tonumber(ARGV[4]), 'attempts', 0,
           'digits', ARGV[9])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]) + tonumber(ARGV[8]))
return remember({'ok', 0})
""")

# KEYS (once_call's two), code. ARGV remember, nonce, digest, the code's number of
# digits, max attempts, ttl for an unknown phone, grace (ms), the number of digits of
# an issued code. An unknown phone gets a record no code matches, with an
# issued code's number of digits, so that it answers exactly as a wrong code
# does, attempts and lock-out included. A code whose number of digits is not
# the stored code's could never match: it is answered with 'digits' and the
# number expected, and counts no attempt.
CHECK = _once("""
local max = tonumber(ARGV[5])
local record = redis.call('HMGET', KEYS[3], 'digest', 'exp', 'attempts', 'digits')
if not record[1] then
  record = {'', tostring(now + tonumber(ARGV[6])), '0', ARGV[8]}
  redis.call('HSET', KEYS[3], 'digest', record[1], 'exp', record[2], 'attempts', 0,
             'digits', record[4])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[6]) + tonumber(ARGV[7]))
end
local digits = tonumber(record[4])
if digits ~= tonumber(ARGV[4]) then return {'digits', digits} end
if now >= tonumber(record[2]) then return {'expired', 0} end
local attempts = tonumber(record[3])
if attempts >= max then return {'locked', 0} end
if record[1] ~= '' and record[1] == ARGV[3] then
  redis.call('DEL', KEYS[3])
  return remember({'ok', max - attempts})
end
attempts = redis.call('HINCRBY', KEYS[3], 'attempts', 1)
if attempts >= max then return remember({'lockout', 0}) end
return remember({'invalid', max - attempts})
""")
