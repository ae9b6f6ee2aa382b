-- KEYS: index, expiry, sizes, bytes, creation times, history index, change log keys
-- (changes.lua). ARGV: now, change block (4, changes.lua), entity, history and version
-- key prefixes (prune.lua) -> number of live entities in the shard
prune(ARGV[1], 256, 2)
return redis.call('ZCARD', KEYS[1]) - redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[1])
