-- KEYS: a time index (sorted set: id -> timestamp), the records hash (id -> value), both
-- of one shard. ARGV: lower bound (ZRANGEBYSCORE syntax), upper bound, count, the
-- cursor's timestamp ("" for none), at most how many ids sharing the cursor's timestamp
-- to return ("" for all)
-- -> {same, in range, id, score, value, ...}: first the ids whose timestamp is the
-- cursor's (all of them, or the cap: the caller keeps those after the cursor's id, as
-- only it compares ids), then up to count ids from the lower bound on, each with its
-- score and stored value (false when gone), so a page is one call per shard
local out = {0, 0}
local function add(members)
  for i = 1, #members, 2 do
    out[#out + 1] = members[i]
    out[#out + 1] = members[i + 1]
    out[#out + 1] = redis.call('HGET', KEYS[2], members[i])
  end
  return #members / 2
end
if ARGV[4] ~= '' then
  local same
  if ARGV[5] ~= '' then
    same = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], ARGV[4], 'WITHSCORES', 'LIMIT', 0,
      tonumber(ARGV[5]))
  else
    same = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], ARGV[4], 'WITHSCORES')
  end
  out[1] = add(same)
end
out[2] = add(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[3])))
return out
