-- KEYS: meta, messages, index, counter, bytes, change log keys (changes.lua).
-- ARGV: conversation id, now, op, PUBLISH|SPUBLISH|"", channel, message,
--       change block (4, changes.lua), message...
-- -> first seq. The meta hash keeps the conversation's payload bytes in field 'b', their
-- logical bytes (logical.lua) in 'l'. A retry
-- of an applied op returns the first outcome and publishes nothing again.
local last = redis.call('HMGET', KEYS[1], 'o', 'r')
if last[1] and last[1] == ARGV[3] then return changes_reply(7, tonumber(last[2])) end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'c', ARGV[2])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
-- the next seq follows the last one (retention may have trimmed the oldest messages)
local tail = redis.call('LINDEX', KEYS[2], -1)
local first = 1
if tail then first = tonumber(string.match(tail, '^%d+')) + 1 end
local n = #ARGV - 10
if n > 0 then
  push(KEYS[2], first, ARGV[2], 11)
  redis.call('INCRBY', KEYS[4], n)
  local b = payload_bytes(11)
  if b > 0 then
    redis.call('HINCRBY', KEYS[1], 'b', b)
    redis.call('INCRBY', KEYS[5], b)
  end
  local l = payload_lbytes(11)
  if l > 0 then
    redis.call('HINCRBY', KEYS[1], 'l', l)
    ladjust(KEYS[5], l)
  end
end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'o', ARGV[3], 'r', first)
announce(ARGV[4], ARGV[5], ARGV[6])
change(7, 'conversation.appended', nil, first + n - 1, n)
return changes_reply(7, first)
