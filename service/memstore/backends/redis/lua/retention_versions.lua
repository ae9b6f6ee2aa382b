-- Read-only. KEYS: history index. ARGV: keep|"", saved|"", after|"" (exclusive), want,
-- budget, entity, history and version key prefixes (the shard's "<P>e:{tag}:",
-- "<P>eh:{tag}:", "<P>ev:{tag}:").
-- Like retention_entities.lua: {last id examined|"", "1" when no more, then id, score,
-- reason for each history row that goes (version_retention.lua), at least ``want``
-- unless the shard has no more; an id's rows come all together}.
local keep, saved = bound(ARGV[1]), bound(ARGV[2])
local start = '-'
if ARGV[3] ~= '' then start = '(' .. ARGV[3] end
local budget, want = tonumber(ARGV[5]), tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, budget)
local out = {'', ''}
local found, last = 0, ''
for i, id in ipairs(ids) do
  last = id
  local doomed = doomed_versions(ARGV[6] .. id, ARGV[7] .. id, ARGV[8], id, keep, saved)
  for j = 1, #doomed, 2 do
    out[#out + 1] = id
    out[#out + 1] = doomed[j]
    out[#out + 1] = doomed[j + 1]
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
