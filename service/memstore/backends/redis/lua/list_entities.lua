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
-- id is live, so the expiry lookup is needed only after a full prune
local check = pruned >= 256
local ids, n = {}, 0
while n < want do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], lo, '+', 'LIMIT', 0, want - n)
  if #batch == 0 then break end
  if check then
    local expiry = redis.call('ZMSCORE', KEYS[2], unpack(batch))
    for i, m in ipairs(batch) do
      local s = expiry[i]
      if (not s) or tonumber(s) > now then n = n + 1; ids[n] = m end
    end
  else
    for i = 1, #batch do ids[n + i] = batch[i] end
    n = n + #batch
  end
  lo = '(' .. batch[#batch]
end
if n == 0 then return {} end
-- one MGET for the page's values (the records share the shard's slot)
local keys, prefix = {}, ARGV[8]
for i = 1, n do keys[i] = prefix .. ids[i] end
local values = redis.call('MGET', unpack(keys))
local out = {}
for i = 1, n do
  out[2 * i - 1], out[2 * i] = ids[i], values[i]
end
return out
