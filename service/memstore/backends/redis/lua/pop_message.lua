-- KEYS: meta, messages, index, counter, bytes, last pop, change log keys (changes.lua).
-- ARGV: conversation id, now, op, PUBLISH|SPUBLISH|"", channel, message,
--       change block (4, changes.lua)
-- -> the popped item ("<seq>\n<created_at>\n<JSON>") or nil.
-- The last-pop key remembers "<op>\n<item>" for a minute, so a retry of a pop whose reply
-- was lost returns the same message instead of popping another (the conversation's meta
-- may be gone by then: popping its only message deletes it). Only a pop that removed a
-- message announces the change, once.
local done = redis.call('GET', KEYS[6])
if done and string.sub(done, 1, #ARGV[3] + 1) == ARGV[3] .. '\n' then
  return changes_reply(7, string.sub(done, #ARGV[3] + 2))
end
local item = redis.call('RPOP', KEYS[2])
if not item then return changes_reply(7, nil) end
-- the payload starts after the second newline
local json_at = string.find(item, '\n', string.find(item, '\n', 1, true) + 1, true) + 1
local b = string.len(item) - json_at + 1
if b > 0 then redis.call('DECRBY', KEYS[5], b) end
local l = message_logical(item)
ladjust(KEYS[5], -l)
redis.call('DECRBY', KEYS[4], 1)
if redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('HINCRBY', KEYS[1], 'b', -b)
  redis.call('HINCRBY', KEYS[1], 'l', -l)
  redis.call('HSET', KEYS[1], 'u', ARGV[2])
end
redis.call('SET', KEYS[6], ARGV[3] .. '\n' .. item, 'PX', 60000)
announce(ARGV[4], ARGV[5], ARGV[6])
change(7, 'conversation.popped', nil, tonumber(string.match(item, '^%d+')))
return changes_reply(7, item)
