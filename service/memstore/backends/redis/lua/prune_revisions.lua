-- KEYS: revisions, revision index. ARGV: conversation id, keep|"", saved|"", revision
-- messages prefix, revision... -> the revisions removed: those given that still go
-- (version_retention.lua).
local doomed = {}
local list = doomed_revisions(KEYS[1], bound(ARGV[2]), bound(ARGV[3]))
for j = 1, #list, 2 do doomed[list[j]] = true end
local out = {}
for i = 5, #ARGV do
  local r = tonumber(ARGV[i])
  if doomed[r] then
    redis.call('HDEL', KEYS[1], r)
    redis.call('DEL', ARGV[4] .. r .. ':' .. ARGV[1])
    out[#out + 1] = r
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return out
