-- Read-only. KEYS: index. ARGV: idle|"", keep|"", after|"" (exclusive), want, budget,
-- meta key prefix ("<P>c:{tag}:"), messages key prefix ("<P>m:{tag}:").
-- Like retention_entities.lua: {last id examined|"", "1" when no more, then id, reason,
-- through_seq, messages per conversation that qualifies, at most ``want``}.
local idle, keep = bound(ARGV[1]), bound(ARGV[2])
local start = '-'
if ARGV[3] ~= '' then start = '(' .. ARGV[3] end
local budget, want = tonumber(ARGV[5]), tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, budget)
local out = {'', ''}
local found, last = 0, ''
for i, id in ipairs(ids) do
  last = id
  local fate = conversation_reason(ARGV[6] .. id, ARGV[7] .. id, idle, keep)
  if fate then
    out[#out + 1] = id
    out[#out + 1] = fate[1]
    out[#out + 1] = fate[2]
    out[#out + 1] = fate[3]
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
