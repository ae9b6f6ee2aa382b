-- KEYS: entity index, expiry index, sizes, bytes, creation times ('<index>:c') of one
-- (namespace, type) shard. ARGV: now, hours, first, last
-- -> {live count, payload bytes, oldest created|"", newest created|"", key, count, ...}
-- From the indexes the write scripts keep, never the entities: counts and bytes as the
-- summary and the quota take them (expired members not yet pruned subtracted), a bucket
-- is a ZCOUNT of the creation times between its edges, less the expired members in it.
-- O(buckets x log(entities) + expired members not yet pruned).
local now = tonumber(ARGV[1])
local hours, first, last = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local dead, dead_counts, bytes = {}, {}, tonumber(redis.call('GET', KEYS[4]) or '0')
for _, id in ipairs(expired) do
  dead[id] = true
  local s = redis.call('HGET', KEYS[3], id)
  if s then bytes = bytes - tonumber(string.match(s, '^%d+')) end
  local c = redis.call('ZSCORE', KEYS[5], id)
  if c then
    local b = bucket_of(tonumber(c), hours, first, last)
    if b then tally(dead_counts, b) end
  end
end
local n = redis.call('ZCARD', KEYS[1]) - #expired
local function live_end(reverse)
  local from = 0
  while true do
    local cmd = reverse and 'ZREVRANGE' or 'ZRANGE'
    local page = redis.call(cmd, KEYS[5], from, from + 99, 'WITHSCORES')
    if #page == 0 then return '' end
    for i = 1, #page, 2 do
      if not dead[page[i]] then return page[i + 1] end
    end
    from = from + 100
  end
end
local out = {n, bytes, live_end(false), live_end(true)}
local width = hours * 3600
if first <= last and redis.call('ZCOUNT', KEYS[5], string.format('%.17g', first * width),
    '(' .. string.format('%.17g', (last + 1) * width)) > 0 then
  for key = first, last do
    local c = redis.call('ZCOUNT', KEYS[5], string.format('%.17g', key * width),
      '(' .. string.format('%.17g', (key + 1) * width)) - (dead_counts[key] or 0)
    if c > 0 then
      out[#out + 1] = key
      out[#out + 1] = c
    end
  end
end
return out
