-- KEYS: index, expiry, sizes, bytes, creation times, history index, change log keys
-- (changes.lua). ARGV: now, change block (4, changes.lua), entity, history and version
-- key prefixes (prune.lua) -> payload bytes of the shard's live entities
while prune(ARGV[1], 1000, 2) > 0 do end
return tonumber(redis.call('GET', KEYS[4]) or '0')
