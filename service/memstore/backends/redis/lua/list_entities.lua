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
local ids = {}
while #ids < want do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], lo, '+', 'LIMIT', 0, want - #ids)
  if #batch == 0 then break end
  local expiry = check and redis.call('ZMSCORE', KEYS[2], unpack(batch)) or {}
  for i, m in ipairs(batch) do
    local s = expiry[i]
    if (not s) or tonumber(s) > now then ids[#ids + 1] = m end
  end
  lo = '(' .. batch[#batch]
end
if #ids == 0 then return {} end
-- one MGET for the page's values (the records share the shard's slot)
local keys = {}
for i, m in ipairs(ids) do keys[i] = ARGV[8] .. m end
local values = redis.call('MGET', unpack(keys))
local out = {}
for i, m in ipairs(ids) do
  out[2 * i - 1] = m
  out[2 * i] = values[i]
end
return out
