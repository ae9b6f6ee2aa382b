-- KEYS: a time index (sorted set: id -> timestamp), the records hash (id -> value), both
-- of one shard. ARGV: lower bound (ZRANGEBYSCORE syntax), upper bound, count, the
-- cursor's timestamp ("" for none), at most how many ids sharing the cursor's timestamp
-- to return ("" for all)
-- -> {same, in range, id, score, value, ...}: first the ids whose timestamp is the
-- cursor's (all of them, or the cap: the caller keeps those after the cursor's id, as
-- only it compares ids), then up to count ids from the lower bound on, each with its
-- score and stored value (false when gone), so a page is one call per shard
local rows = {}
local counts = {0, 0}
local function add(part, members)
  for i = 1, #members, 2 do rows[#rows + 1] = {members[i], members[i + 1]} end
  counts[part] = #members / 2
end
if ARGV[4] ~= '' then
  if ARGV[5] ~= '' then
    add(1, redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], ARGV[4], 'WITHSCORES', 'LIMIT', 0,
      tonumber(ARGV[5])))
  else
    add(1, redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], ARGV[4], 'WITHSCORES'))
  end
end
add(2, redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[3])))
local out = {counts[1], counts[2]}
if #rows == 0 then return out end
local ids = {}
for i, row in ipairs(rows) do ids[i] = row[1] end
-- one HMGET for the page's values
local values = redis.call('HMGET', KEYS[2], unpack(ids))
for i, row in ipairs(rows) do
  out[#out + 1] = row[1]
  out[#out + 1] = row[2]
  out[#out + 1] = values[i]
end
return out
