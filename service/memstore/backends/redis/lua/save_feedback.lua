-- KEYS: records, overall, per agent, per type, per (agent, type), bytes.
-- ARGV: id, timestamp, value, accounted bytes -> 1 new / 0 duplicate
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end
for i = 2, 5 do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1]) end
if ARGV[4] ~= '0' then redis.call('INCRBY', KEYS[6], ARGV[4]) end
return 1
