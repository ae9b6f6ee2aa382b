-- KEYS: meta, messages, index, counter, bytes, change log keys (changes.lua).
-- ARGV: conversation id, now, op, PUBLISH|SPUBLISH|"", channel, message,
--       change block (4, changes.lua), message... -> 1
local last = redis.call('HMGET', KEYS[1], 'o', 'b')
if last[1] and last[1] == ARGV[3] then return changes_reply(7, 1) end
local old_bytes = tonumber(last[2] or '0')
local new_bytes = payload_bytes(11)
local old = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'c', ARGV[2])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
local n = #ARGV - 10
if n > 0 then push(KEYS[2], 1, ARGV[2], 11) end
if n - old ~= 0 then redis.call('INCRBY', KEYS[4], n - old) end
if new_bytes ~= old_bytes then redis.call('INCRBY', KEYS[5], new_bytes - old_bytes) end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'o', ARGV[3], 'r', 1, 'b', new_bytes)
announce(ARGV[4], ARGV[5], ARGV[6])
change(7, 'conversation.replaced', nil, n, n)
return changes_reply(7, 1)
