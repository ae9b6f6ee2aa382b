-- KEYS: records, time index, counts, bytes, change log keys (changes.lua).
-- ARGV: per-tool key prefix, change block (2, changes.lua), record id... -> removed count.
-- Removes the named tool uses (a tool use never changes, so what was selected still
-- qualifies; one already gone is skipped) and logs one tool_usage.pruned with the count.
local removed = 0
for i = 6, #ARGV do
  local id = ARGV[i]
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    local tool, size = string.match(v, '^([^\n]*)\n(%d*)')
    redis.call('ZREM', ARGV[1] .. tool, id)
    size = tonumber(size) or 0
    if size ~= 0 then redis.call('DECRBY', KEYS[4], size) end
    ladjust(KEYS[4], -tool_logical(v))
    if redis.call('HINCRBY', KEYS[3], tool, -1) <= 0 then redis.call('HDEL', KEYS[3], tool) end
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    removed = removed + 1
  end
end
if removed > 0 then change(2, 'tool_usage.pruned', '{}', nil, removed) end
return changes_reply(2, removed)
