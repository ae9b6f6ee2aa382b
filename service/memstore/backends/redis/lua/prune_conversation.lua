-- KEYS: meta, messages, index, counter, bytes, revisions, revision index, change log
-- keys (changes.lua). ARGV: conversation id, idle|"", keep|"", change block (4,
-- changes.lua), revision messages prefix
-- -> {reason, through_seq, messages} removed (the whole conversation, with its
-- conversation.pruned event, or its oldest messages, with conversation.trimmed), or nil
-- when it no longer qualifies. A trim leaves the kept messages' seq as they were. A
-- conversation pruned whole goes as a delete goes, its revisions with it.
local fate = conversation_reason(KEYS[1], KEYS[2], bound(ARGV[2]), bound(ARGV[3]))
if not fate then return changes_reply(4, nil) end
if fate[1] == 'idle' then
  local b = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
  if b ~= 0 then redis.call('DECRBY', KEYS[5], b) end
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
  if fate[3] > 0 then redis.call('DECRBY', KEYS[4], fate[3]) end
  erase_revisions(KEYS[6], KEYS[7], ARGV[8], ARGV[1])
  change(4, 'conversation.pruned', nil, fate[2], fate[3])
  return changes_reply(4, fate)
end
local k = fate[3]
local freed = 0
for _, item in ipairs(redis.call('LRANGE', KEYS[2], 0, k - 1)) do
  -- the payload starts after the second newline
  local json_at = string.find(item, '\n', string.find(item, '\n', 1, true) + 1, true) + 1
  freed = freed + string.len(item) - json_at + 1
end
redis.call('LTRIM', KEYS[2], k, -1)
redis.call('DECRBY', KEYS[4], k)
if freed ~= 0 then
  redis.call('DECRBY', KEYS[5], freed)
  redis.call('HINCRBY', KEYS[1], 'b', -freed)
end
change(4, 'conversation.trimmed', nil, fate[2], k)
return changes_reply(4, fate)
