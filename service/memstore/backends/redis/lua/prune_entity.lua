-- KEYS: entity, index, expiry, sizes, bytes, creation times, history index, history,
-- accessed, change log keys (changes.lua). ARGV: id, now, saved|"", idle|"",
-- change block (5, changes.lua), the tombstone's actor JSON, version key prefix
-- (history.lua)
-- -> {reason, version} when the entity still qualifies at ``now`` and was removed (with
-- its entity.pruned event), else nil. Removed as a delete removes: the version moves into
-- the history, and a tombstone at ``now`` keeps the numbering.
local cur = header(KEYS[1])
local reason = entity_reason(cur, KEYS[9], ARGV[1], tonumber(ARGV[2]), bound(ARGV[3]), bound(ARGV[4]))
if not reason then return changes_reply(5, nil) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local old = accounted(cur, KEYS[4])
redis.call('HDEL', KEYS[4], ARGV[1])
if old ~= 0 then redis.call('DECRBY', KEYS[5], old) end
keep_version(cur, KEYS[1], KEYS[8], KEYS[7], ARGV[1], ARGV[10])
tombstone(KEYS[8], cur[1], ARGV[2], ARGV[9], ARGV[10])
redis.call('HDEL', KEYS[9], ARGV[1])
change(5, 'entity.pruned', nil, cur[1])
return changes_reply(5, {reason, cur[1]})
