-- KEYS: meta, messages, index, counter, bytes, revisions, revision index, change log
-- keys (changes.lua).
-- ARGV: conversation id, PUBLISH|SPUBLISH|"", channel, message, change block (4,
-- changes.lua), revision messages prefix -> 1 if it existed (only then is the change
-- announced and logged). A delete erases the conversation's revisions too.
local existed = redis.call('EXISTS', KEYS[1])
local b = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
if b ~= 0 then redis.call('DECRBY', KEYS[5], b) end
local n = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if n > 0 then redis.call('DECRBY', KEYS[4], n) end
erase_revisions(KEYS[6], KEYS[7], ARGV[9], ARGV[1])
if existed == 1 then
  announce(ARGV[2], ARGV[3], ARGV[4])
  change(5, 'conversation.deleted')
end
return changes_reply(5, existed)
