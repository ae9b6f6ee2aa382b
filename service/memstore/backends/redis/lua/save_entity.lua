-- KEYS: entity, index, expiry, sizes, bytes, creation times, change log keys (changes.lua).
-- ARGV: id, data, now, expires_at|"", expected|"", op, pexpireat|"",
--       PUBLISH|SPUBLISH|"", channel, message, change block (4, changes.lua)
-- -> {"ok", version, created_at, updated_at, expires_at, pinned "1"|""} | {"conflict", current|""}
-- A replace keeps the pin (header field 7); a create starts unpinned.
-- A retry of an applied op returns the first outcome and publishes and logs nothing again
-- (the first run did both in the same atomic step).
local cur = header(KEYS[1])
if cur and cur[5] == ARGV[6] then
  return changes_reply(11, {'ok', cur[1], cur[2], cur[3], cur[4], cur[7]})
end
local current = live_version(cur, tonumber(ARGV[3]))
local refused = conflict(ARGV[5], current)
if refused then return changes_reply(11, refused) end
local version = (current or 0) + 1
local created = ARGV[3]
local pin = ''
if current then created = cur[2]; pin = cur[7] end
local old = accounted(cur, KEYS[4])
local size = string.len(ARGV[2])
local pinned = ''
if pin == '1' then pinned = '|1' end
local value = version .. '|' .. created .. '|' .. ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[6]
  .. pinned .. '\n' .. ARGV[2]
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], value, 'PXAT', ARGV[7])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], size .. ':' .. version)
else
  redis.call('SET', KEYS[1], value)
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if size ~= old then redis.call('INCRBY', KEYS[5], size - old) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
-- creation times (analytics), id -> created_at. NX on every save: a replace keeps the
-- first score, and an entity stored before this index existed joins it on its next write.
redis.call('ZADD', KEYS[6], 'NX', created, ARGV[1])
announce(ARGV[8], ARGV[9], ARGV[10])
change(11, 'entity.saved', nil, version)
return changes_reply(11, {'ok', tostring(version), created, ARGV[3], ARGV[4], pin})
