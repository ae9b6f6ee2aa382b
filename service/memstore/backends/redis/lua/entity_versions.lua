-- Read-only. KEYS: entity, history. ARGV: highest score, lowest score (ZRANGEBYSCORE
-- bounds: "+inf", "(14", "6"...), count
-- -> {the stored entity's value or nil, {row, score, ...}}: the history rows between the
-- bounds, highest score first (history.lua), at most ``count``. One script, so a save
-- running meanwhile cannot show a version twice or not at all.
return {
  redis.call('GET', KEYS[1]),
  redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', 0, ARGV[3]),
}
