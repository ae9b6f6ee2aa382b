-- KEYS: meta, messages, index, counter, bytes, revisions, revision index, change log
-- keys (changes.lua).
-- ARGV: conversation id, now, op, PUBLISH|SPUBLISH|"", channel, message,
--       change block (4, changes.lua), actor JSON|"", revision messages prefix ("" in
--       the service's own namespaces, which keep no revisions), message... -> 1
-- The messages replaced, if any, become the conversation's next revision (revisions.lua).
local last = redis.call('HMGET', KEYS[1], 'o', 'b')
if last[1] and last[1] == ARGV[3] then return changes_reply(7, 1) end
local old_bytes = tonumber(last[2] or '0')
local new_bytes = payload_bytes(13)
local old = redis.call('LLEN', KEYS[2])
if old > 0 and ARGV[12] == '' then
  redis.call('DEL', KEYS[2])
elseif old > 0 then
  local r = (revision_numbers(KEYS[6])[1] or 0) + 1
  redis.call('RENAME', KEYS[2], ARGV[12] .. r .. ':' .. ARGV[1])
  redis.call('HSET', KEYS[6], r, ARGV[2] .. '|' .. old .. '|' .. ARGV[11])
  redis.call('ZADD', KEYS[7], 0, ARGV[1])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'c', ARGV[2])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
local n = #ARGV - 12
if n > 0 then push(KEYS[2], 1, ARGV[2], 13) end
if n - old ~= 0 then redis.call('INCRBY', KEYS[4], n - old) end
if new_bytes ~= old_bytes then redis.call('INCRBY', KEYS[5], new_bytes - old_bytes) end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'o', ARGV[3], 'r', 1, 'b', new_bytes)
announce(ARGV[4], ARGV[5], ARGV[6])
change(7, 'conversation.replaced', nil, n, n)
return changes_reply(7, 1)
