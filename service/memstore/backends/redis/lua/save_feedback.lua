-- KEYS: records, overall, per agent, per type, per (agent, type), bytes, change log keys
-- (changes.lua). ARGV: id, timestamp, value, accounted bytes, change block (4,
-- changes.lua) -> 1 new / 0 duplicate
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return changes_reply(5, 0) end
for i = 2, 5 do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1]) end
if ARGV[4] ~= '0' then redis.call('INCRBY', KEYS[6], ARGV[4]) end
ladjust(KEYS[6], feedback_logical(ARGV[3]))
change(5, 'feedback.saved')
return changes_reply(5, 1)
