-- KEYS: records, time index, bytes, change log keys (changes.lua).
-- ARGV: per-agent, per-type, per-(agent, type) index key prefixes, change block (4,
-- changes.lua), then id, agent, type, accounted bytes per record -> removed count.
-- Removes the named records (a record never changes; one already gone is skipped) and logs
-- one feedback.pruned with the count.
local removed = 0
for i = 8, #ARGV, 4 do
  local id, agent, kind, size = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    redis.call('HDEL', KEYS[1], id)
    ladjust(KEYS[3], -feedback_logical(v))
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', ARGV[1] .. agent, id)
    redis.call('ZREM', ARGV[2] .. kind, id)
    redis.call('ZREM', ARGV[3] .. agent .. ':' .. kind, id)
    if size ~= 0 then redis.call('DECRBY', KEYS[3], size) end
    removed = removed + 1
  end
end
if removed > 0 then change(4, 'feedback.pruned', '{}', nil, removed) end
return changes_reply(4, removed)
