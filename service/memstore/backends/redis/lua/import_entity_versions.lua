-- KEYS: history index, history. ARGV: id, version key prefix, then score, member, row for
-- each row (history.lua; row "" for a tombstone) -> 1. Writes history rows as given (a
-- dump import), replacing a row of the same version and kind (live or tombstone); the
-- stored entity is not touched.
for i = 3, #ARGV, 3 do
  local score = ARGV[i]
  redis.call('ZREMRANGEBYSCORE', KEYS[2], score, score)
  redis.call('ZADD', KEYS[2], score, ARGV[i + 1])
  if tonumber(score) % 2 == 0 then
    redis.call('SET', ARGV[2] .. ARGV[i + 1] .. ':' .. ARGV[1], ARGV[i + 2])
  end
end
if #ARGV > 2 then redis.call('ZADD', KEYS[1], 0, ARGV[1]) end
return 1
