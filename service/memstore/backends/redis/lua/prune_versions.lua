-- KEYS: entity, history index, history. ARGV: id, keep|"", saved|"", version key prefix,
-- score... -> the scores removed: those given that still go (version_retention.lua).
-- History rows append no change event (the write that made them logged one).
local doomed = {}
local list = doomed_versions(KEYS[1], KEYS[3], ARGV[4], ARGV[1], bound(ARGV[2]), bound(ARGV[3]))
for j = 1, #list, 2 do doomed[tonumber(list[j])] = true end
local out = {}
for i = 5, #ARGV do
  if doomed[tonumber(ARGV[i])] then
    drop_version(KEYS[3], ARGV[4], ARGV[1], ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return out
