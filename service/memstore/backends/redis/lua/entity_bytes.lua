-- KEYS: index, expiry, sizes, bytes. ARGV: now -> payload bytes of the shard's live entities
while prune(ARGV[1], 1000) > 0 do end
return tonumber(redis.call('GET', KEYS[4]) or '0')
