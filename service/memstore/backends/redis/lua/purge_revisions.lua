-- KEYS: revision index. ARGV: budget, revisions prefix, revision messages prefix (the
-- shard's "<P>cr:{tag}:", "<P>crm:{tag}:")
-- -> {"1" when no more, revisions removed}. Erases the revisions (revisions.lua) of at
-- most ``budget`` conversations of the shard.
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local removed = 0
for _, id in ipairs(ids) do
  removed = removed + erase_revisions(ARGV[2] .. id, KEYS[1], ARGV[3], id)
end
local done = ''
if #ids < tonumber(ARGV[1]) then done = '1' end
return {done, removed}
