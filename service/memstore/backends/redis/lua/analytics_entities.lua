-- KEYS: entity index, expiry index of one (namespace, type) shard.
-- ARGV: now, entity key prefix ("<prefix>e:{<tag>}:"), hours, first, last
-- -> {live count, payload bytes, oldest created|"", newest created|"", key, count, ...}
-- Reads every live entity's header (GETRANGE), never its payload: O(entities of the shard).
local now, prefix = tonumber(ARGV[1]), ARGV[2]
local hours, first, last = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local expired = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do expired[id] = true end
local n, bytes, oldest, newest, lo, hi = 0, 0, '', '', 0, 0
local counts = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not expired[id] then
    local key = prefix .. id
    local h = header(key)
    if h then
      local x = tonumber(h[4])
      if not x or x > now then
        local c = tonumber(h[2])
        n = n + 1
        bytes = bytes + redis.call('STRLEN', key) - h[6]
        if oldest == '' or c < lo then oldest, lo = h[2], c end
        if newest == '' or c > hi then newest, hi = h[2], c end
        local b = bucket_of(c, hours, first, last)
        if b then tally(counts, b) end
      end
    end
  end
end
return flat_counts({n, bytes, oldest, newest}, counts)
