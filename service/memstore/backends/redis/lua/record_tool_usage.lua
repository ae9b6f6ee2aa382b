-- KEYS: records, time index, per-tool index, counts, bytes, change log keys (changes.lua).
-- ARGV: id, timestamp, tool name, value, cutoff|"", per-tool key prefix, accounted bytes,
--       change block (4, changes.lua) -> 1 new / 0 duplicate
if ARGV[5] ~= '' then trim(ARGV[5], 100, ARGV[6], 8) end
if ARGV[5] ~= '' and tonumber(ARGV[2]) < tonumber(ARGV[5]) then return changes_reply(8, 0) end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[4]) == 0 then return changes_reply(8, 0) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
if ARGV[7] ~= '0' then redis.call('INCRBY', KEYS[5], ARGV[7]) end
ladjust(KEYS[5], tool_logical(ARGV[4]))
change(8, 'tool_usage.recorded')
return changes_reply(8, 1)
