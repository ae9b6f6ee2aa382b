-- KEYS: entity, index, expiry, sizes, bytes, creation times, history index, history,
--       change log keys (changes.lua).
-- ARGV: id, data, now, expires_at|"", expected|"", op, actor JSON|"",
--       PUBLISH|SPUBLISH|"", channel, message, change block (4, changes.lua),
--       version key prefix (history.lua)
-- -> {"ok", version, created_at, updated_at, expires_at, pinned "1"|""} | {"conflict", current|""}
-- A replace keeps the pin (header field 7); a create starts unpinned. The version replaced
-- (live or expired) moves into the history; a create numbers on after the highest version
-- the key ever had (history, tombstones, an expired row), so versions never restart.
-- The key gets no Redis TTL: an expired entity stays (reads hide it) until a save, delete
-- or the expiry prune moves it into its history.
-- A retry of an applied op returns the first outcome and publishes and logs nothing again
-- (the first run did both in the same atomic step).
local cur = header(KEYS[1])
if cur and cur[5] == ARGV[6] then
  return changes_reply(11, {'ok', cur[1], cur[2], cur[3], cur[4], cur[7]})
end
local current = live_version(cur, tonumber(ARGV[3]))
local refused = conflict(ARGV[5], current)
if refused then return changes_reply(11, refused) end
local version, created, pin = 0, ARGV[3], ''
if current then
  version = current + 1
  created = cur[2]
  pin = cur[7]
else
  version = top_version(KEYS[8])
  if cur and tonumber(cur[1]) > version then version = tonumber(cur[1]) end
  -- a key Redis expired itself (written before history) left its version in the sizes hash
  local sized = redis.call('HGET', KEYS[4], ARGV[1])
  local gone = sized and tonumber(string.match(sized, ':(%d+)$'))
  if gone and gone > version then version = gone end
  version = version + 1
end
local old = accounted(cur, KEYS[4])
if cur then keep_version(cur, KEYS[1], KEYS[8], KEYS[7], ARGV[1], ARGV[15]) end
local size = string.len(ARGV[2])
redis.call('SET', KEYS[1],
  head(version, created, ARGV[3], ARGV[4], ARGV[6], pin, ARGV[7]) .. '\n' .. ARGV[2])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], size .. ':' .. version)
else
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if size ~= old then redis.call('INCRBY', KEYS[5], size - old) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
-- creation times (analytics), id -> created_at. NX on every save: a replace keeps the
-- first score, and an entity stored before this index existed joins it on its next write.
-- A create over an expired row takes the new creation time.
if current then
  redis.call('ZADD', KEYS[6], 'NX', created, ARGV[1])
else
  redis.call('ZADD', KEYS[6], created, ARGV[1])
end
announce(ARGV[8], ARGV[9], ARGV[10])
change(11, 'entity.saved', nil, version)
return changes_reply(11, {'ok', tostring(version), created, ARGV[3], ARGV[4], pin})
