-- KEYS: entity, index, expiry, sizes, bytes, creation times, history index, history,
-- last delete's op, change log keys (changes.lua).
-- ARGV: id, now, expected|"", op, PUBLISH|SPUBLISH|"", channel, message,
--       change block (4, changes.lua), actor JSON|"", version key prefix (history.lua)
-- -> {"ok", 0|1} | {"conflict", cur|""}. The deleted version moves into the history and a
-- tombstone (same version, the delete's time and actor) follows it, so a re-create numbers
-- on. The op key remembers the op id for a minute so a retry of a delete whose reply was
-- lost reports the same outcome. Logs entity.deleted with the removed version. Removing
-- what is left of an expired entity (its key, into the history, and its index entries)
-- logs entity.expired instead, as the expiry prune would have: the delete itself found
-- nothing, reports 0 and leaves no tombstone.
if redis.call('GET', KEYS[9]) == ARGV[4] then return changes_reply(8, {'ok', '1'}) end
local cur = header(KEYS[1])
local current = live_version(cur, tonumber(ARGV[2]))
local refused = conflict(ARGV[3], current)
if refused then return changes_reply(8, refused) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
local expiring = redis.call('ZREM', KEYS[3], ARGV[1]) == 1
local sized = redis.call('HGET', KEYS[4], ARGV[1])
local old = accounted(cur, KEYS[4])
redis.call('HDEL', KEYS[4], ARGV[1])
if old ~= 0 then redis.call('DECRBY', KEYS[5], old) end
if cur then
  keep_version(cur, KEYS[1], KEYS[8], KEYS[7], ARGV[1], ARGV[13])
  announce(ARGV[5], ARGV[6], ARGV[7])
end
if current then
  tombstone(KEYS[8], current, ARGV[2], ARGV[12] or '', ARGV[13])
  redis.call('SET', KEYS[9], ARGV[4], 'PX', 60000)
  change(8, 'entity.deleted', nil, current)
  return changes_reply(8, {'ok', '1'})
end
if expiring then
  local version = cur and cur[1] or (sized and string.match(sized, ':(%d+)$'))
  change(8, 'entity.expired', nil, version)
end
return changes_reply(8, {'ok', '0'})
