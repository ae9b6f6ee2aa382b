-- KEYS: entity, index, expiry, sizes, bytes, creation times, change log keys (changes.lua).
-- ARGV: id, data, updated_at, expires_at|"", version, op, pexpireat|"",
--       PUBLISH|SPUBLISH|"", channel, message, change block (4, changes.lua), created_at,
--       pinned "1"|""
-- -> 1. Writes the record as given (an import: no version check, the creation time
-- replaced). A retry of an applied op logs and publishes nothing again.
local cur = header(KEYS[1])
if cur and cur[5] == ARGV[6] then return changes_reply(11, 1) end
local old = accounted(cur, KEYS[4])
local size = string.len(ARGV[2])
local created = ARGV[15]
local pinned = ''
if ARGV[16] == '1' then pinned = '|1' end
local value = ARGV[5] .. '|' .. created .. '|' .. ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[6]
  .. pinned .. '\n' .. ARGV[2]
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], value, 'PXAT', ARGV[7])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], size .. ':' .. ARGV[5])
else
  redis.call('SET', KEYS[1], value)
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if size ~= old then redis.call('INCRBY', KEYS[5], size - old) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[6], created, ARGV[1])
announce(ARGV[8], ARGV[9], ARGV[10])
change(11, 'entity.saved', nil, ARGV[5])
return changes_reply(11, 1)
