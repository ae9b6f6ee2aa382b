-- KEYS: revisions, revision index. ARGV: conversation id, revision messages prefix,
-- revision... -> the number of revisions removed (revisions.lua). Never touches the live
-- conversation; no change event.
local removed = 0
for i = 3, #ARGV do
  local r = tonumber(ARGV[i])
  if redis.call('HDEL', KEYS[1], r) == 1 then removed = removed + 1 end
  redis.call('DEL', ARGV[2] .. r .. ':' .. ARGV[1])
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return removed
