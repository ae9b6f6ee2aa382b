-- KEYS: entity, index, expiry, sizes, bytes, creation times, history index, history,
--       change log keys (changes.lua).
-- ARGV: id, data, updated_at, expires_at|"", version, op, actor JSON|"",
--       PUBLISH|SPUBLISH|"", channel, message, change block (4, changes.lua), created_at,
--       pinned "1"|"", version key prefix (history.lua)
-- -> 1. Writes the record as given (an import: no version check, the creation time
-- replaced). The stored record, if its version differs, moves into the history as a save
-- would move it (a replicated secondary builds the primary's history). A retry of an
-- applied op logs and publishes nothing again.
local cur = header(KEYS[1])
if cur and cur[5] == ARGV[6] then return changes_reply(11, 1) end
local old = accounted(cur, KEYS[4])
if cur and cur[1] ~= ARGV[5] then
  keep_version(cur, KEYS[1], KEYS[8], KEYS[7], ARGV[1], ARGV[17])
end
local size = string.len(ARGV[2])
local created = ARGV[15]
redis.call('SET', KEYS[1],
  head(ARGV[5], created, ARGV[3], ARGV[4], ARGV[6], ARGV[16], ARGV[7]) .. '\n' .. ARGV[2])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], size .. ':' .. ARGV[5])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if size ~= old then redis.call('INCRBY', KEYS[5], size - old) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[6], created, ARGV[1])
announce(ARGV[8], ARGV[9], ARGV[10])
change(11, 'entity.saved', nil, ARGV[5])
return changes_reply(11, 1)
