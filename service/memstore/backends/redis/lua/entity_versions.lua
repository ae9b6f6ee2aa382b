-- Read-only. KEYS: entity, history. ARGV: highest score, lowest score (ZRANGEBYSCORE
-- bounds: "+inf", "(14", "6"...), count, version key prefix, id
-- -> {the stored entity's value or nil, {member, score, row, ...}}: the history rows
-- between the bounds, highest score first (history.lua), at most ``count``; ``row`` is a
-- past version's stored value (nil for a tombstone: its member is its row). One script,
-- so a save running meanwhile cannot show a version twice or not at all.
local rows = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', 0,
  ARGV[3])
local out = {}
for j = 1, #rows, 2 do
  out[#out + 1] = rows[j]
  out[#out + 1] = rows[j + 1]
  if tonumber(rows[j + 1]) % 2 == 0 then
    out[#out + 1] = redis.call('GET', ARGV[4] .. rows[j] .. ':' .. ARGV[5])
  else
    out[#out + 1] = false
  end
end
return {redis.call('GET', KEYS[1]), out}
