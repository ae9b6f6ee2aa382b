-- KEYS: a time index (sorted set: id -> timestamp), the records hash (id -> value), both
-- of one shard. ARGV: lower bound (ZRANGEBYSCORE syntax), upper bound, count, the
-- cursor's timestamp ("" for none), at most how many ids sharing the cursor's timestamp
-- to return ("" for all)
-- -> {same, in range, id, score, value, ...}: first the ids whose timestamp is the
-- cursor's (all of them, or the cap: the caller keeps those after the cursor's id, as
-- only it compares ids), then up to count ids from the lower bound on, each with its
-- score and stored value (false when gone), so a page is one call per shard. Written for
-- few allocations: the reply is built in place, the values come from one HMGET.
local same = {}
if ARGV[4] ~= '' then
  if ARGV[5] ~= '' then
    same = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], ARGV[4], 'WITHSCORES', 'LIMIT', 0,
      tonumber(ARGV[5]))
  else
    same = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], ARGV[4], 'WITHSCORES')
  end
end
local ranged = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT',
  0, tonumber(ARGV[3]))
local ns, nr = #same / 2, #ranged / 2
local out = {ns, nr}
if ns + nr == 0 then return out end
local ids, n = {}, 0
for i = 1, #same, 2 do n = n + 1; ids[n] = same[i] end
for i = 1, #ranged, 2 do n = n + 1; ids[n] = ranged[i] end
local values = redis.call('HMGET', KEYS[2], unpack(ids))
local j, v = 3, 1
for i = 1, #same, 2 do
  out[j], out[j + 1], out[j + 2] = same[i], same[i + 1], values[v]
  j, v = j + 3, v + 1
end
for i = 1, #ranged, 2 do
  out[j], out[j + 1], out[j + 2] = ranged[i], ranged[i + 1], values[v]
  j, v = j + 3, v + 1
end
return out
