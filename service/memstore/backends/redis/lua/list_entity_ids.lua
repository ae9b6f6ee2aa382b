-- KEYS: index, expiry, sizes, bytes, creation times, history index, change log keys
-- (changes.lua). ARGV: now, lex lower bound ("-" or "(id"), count, change block (4,
-- changes.lua), entity, history and version key prefixes (prune.lua)
-- -> live ids in order
prune(ARGV[1], 256, 4)
local now = tonumber(ARGV[1])
local want = tonumber(ARGV[3])
local lo = ARGV[2]
local out = {}
while #out < want do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], lo, '+', 'LIMIT', 0, want - #out)
  if #batch == 0 then break end
  for _, m in ipairs(batch) do
    local s = redis.call('ZSCORE', KEYS[2], m)
    if (not s) or tonumber(s) > now then out[#out + 1] = m end
  end
  lo = '(' .. batch[#batch]
end
return out
