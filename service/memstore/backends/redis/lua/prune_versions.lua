-- KEYS: entity, history index, history. ARGV: id, now, keep|"", saved|"", score...
-- -> the scores removed: those given that still go at ``now`` (version_retention.lua).
-- History rows append no change event (the write that made them logged one).
local doomed = {}
for _, s in ipairs(doomed_versions(KEYS[1], KEYS[3], tonumber(ARGV[2]), bound(ARGV[3]),
    bound(ARGV[4]))) do
  doomed[tonumber(s)] = true
end
local out = {}
for i = 5, #ARGV do
  if doomed[tonumber(ARGV[i])] then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], ARGV[i], ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return out
