-- Read-only. KEYS: index, accessed. ARGV: now, saved|"", idle|"", after|"" (exclusive),
-- want, budget, entity key prefix (the shard's "<P>e:{tag}:").
-- Examines at most ``budget`` ids after ``after`` in id order and returns
-- {last id examined|"", "1" when the shard has no more ids, then id, reason, version for
-- each entity that qualifies, at most ``want``}.
local now, saved, idle = tonumber(ARGV[1]), bound(ARGV[2]), bound(ARGV[3])
local start = '-'
if ARGV[4] ~= '' then start = '(' .. ARGV[4] end
local budget, want = tonumber(ARGV[6]), tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, budget)
local out = {'', ''}
local found, last = 0, ''
for i, id in ipairs(ids) do
  last = id
  local cur = header(ARGV[7] .. id)
  local reason = entity_reason(cur, KEYS[2], id, now, saved, idle)
  if reason then
    out[#out + 1] = id
    out[#out + 1] = reason
    out[#out + 1] = cur[1]
    found = found + 1
    if found >= want then
      out[1] = last
      if i == #ids and #ids < budget then out[2] = '1' end
      return out
    end
  end
end
out[1] = last
if #ids < budget then out[2] = '1' end
return out
