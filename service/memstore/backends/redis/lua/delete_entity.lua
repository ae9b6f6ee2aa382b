-- KEYS: entity, index, expiry, sizes, bytes, tombstone.
-- ARGV: id, now, expected|"", op, PUBLISH|SPUBLISH|"", channel, message
-- -> {"ok", 0|1} | {"conflict", cur|""}. The tombstone remembers the op id for a minute so
-- a retry of a delete whose reply was lost reports the same outcome.
if redis.call('GET', KEYS[6]) == ARGV[4] then return {'ok', '1'} end
local cur = header(KEYS[1])
local current = live_version(cur, tonumber(ARGV[2]))
local refused = conflict(ARGV[3], current)
if refused then return refused end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local old = accounted(cur, KEYS[4])
redis.call('HDEL', KEYS[4], ARGV[1])
if old ~= 0 then redis.call('DECRBY', KEYS[5], old) end
if not cur then return {'ok', '0'} end
redis.call('DEL', KEYS[1])
announce(ARGV[5], ARGV[6], ARGV[7])
if current then
  redis.call('SET', KEYS[6], ARGV[4], 'PX', 60000)
  return {'ok', '1'}
end
return {'ok', '0'}
