-- KEYS: history index, history. ARGV: id, version key prefix, score... (history.lua: 2 x
-- version, +1 for a tombstone) -> the number of rows removed. Removes exactly these
-- history rows (the replication making a copy's history the source's); the stored entity
-- is not touched and no change event is appended.
local removed = 0
for i = 3, #ARGV do
  local score = ARGV[i]
  if redis.call('ZCOUNT', KEYS[2], score, score) > 0 then
    if tonumber(score) % 2 == 0 then
      redis.call('DEL', ARGV[2] .. math.floor(tonumber(score) / 2) .. ':' .. ARGV[1])
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[2], score, score)
    removed = removed + 1
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end
return removed
