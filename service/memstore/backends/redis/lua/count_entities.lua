-- KEYS: index, expiry, sizes, bytes. ARGV: now -> number of live entities in the shard
prune(ARGV[1], 256)
return redis.call('ZCARD', KEYS[1]) - redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[1])
