-- Read-only. KEYS: revision index. ARGV: keep|"", saved|"", after|"" (exclusive), want,
-- budget, revisions key prefix (the shard's "<P>cr:{tag}:").
-- Like retention_versions.lua: {last id examined|"", "1" when no more, then id, revision,
-- reason for each revision that goes (version_retention.lua)}.
local keep, saved = bound(ARGV[1]), bound(ARGV[2])
local start = '-'
if ARGV[3] ~= '' then start = '(' .. ARGV[3] end
local budget, want = tonumber(ARGV[5]), tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, budget)
local out = {'', ''}
local found, last = 0, ''
for i, id in ipairs(ids) do
  last = id
  local doomed = doomed_revisions(ARGV[6] .. id, keep, saved)
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
