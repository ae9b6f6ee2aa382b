-- KEYS: index, expiry, sizes, bytes, creation times, history index, change log keys
-- (changes.lua). ARGV: now, lex lower bound ("-" or "(id"), count, change block (4,
-- changes.lua), entity, history and version key prefixes (prune.lua)
-- -> {id, value, id, value, ...}: up to count live ids in order, each with its stored
-- value (false when the key is gone), so a page is one call per shard
local pruned = prune(ARGV[1], 256, 4)
local now = tonumber(ARGV[1])
local want = tonumber(ARGV[3])
local lo = ARGV[2]
-- a prune that stopped short of its limit left no expired member behind: every indexed
-- id is live, so the per-id expiry lookup is needed only after a full prune
local check = pruned >= 256
local out = {}
local n = 0
while n < want do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], lo, '+', 'LIMIT', 0, want - n)
  if #batch == 0 then break end
  for _, m in ipairs(batch) do
    local live = true
    if check then
      local s = redis.call('ZSCORE', KEYS[2], m)
      live = (not s) or tonumber(s) > now
    end
    if live then
      n = n + 1
      out[#out + 1] = m
      out[#out + 1] = redis.call('GET', ARGV[8] .. m)
    end
  end
  lo = '(' .. batch[#batch]
end
return out
