-- Read-only. KEYS: history index. ARGV: now, keep|"", saved|"", after|"" (exclusive),
-- want, budget, entity key prefix, history key prefix (the shard's "<P>e:{tag}:",
-- "<P>eh:{tag}:").
-- Like retention_entities.lua: {last id examined|"", "1" when no more, then id, score for
-- each history row that goes (version_retention.lua), at least ``want`` unless the shard
-- has no more; an id's rows come all together, highest score first}.
local now, keep, saved = tonumber(ARGV[1]), bound(ARGV[2]), bound(ARGV[3])
local start = '-'
if ARGV[4] ~= '' then start = '(' .. ARGV[4] end
local budget, want = tonumber(ARGV[6]), tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, budget)
local out = {'', ''}
local found, last = 0, ''
for i, id in ipairs(ids) do
  last = id
  for _, score in ipairs(doomed_versions(ARGV[7] .. id, ARGV[8] .. id, now, keep, saved)) do
    out[#out + 1] = id
    out[#out + 1] = score
    found = found + 1
  end
  if found >= want then
    out[1] = last
    if i == #ids and #ids < budget then out[2] = '1' end
    return out
  end
end
out[1] = last
if #ids < budget then out[2] = '1' end
return out
