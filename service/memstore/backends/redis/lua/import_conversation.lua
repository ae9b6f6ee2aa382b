-- KEYS: meta, messages, index, counter, bytes, change log keys (changes.lua).
-- ARGV: conversation id, created_at, op, PUBLISH|SPUBLISH|"", channel, message,
--       change block (4, changes.lua), updated_at, payload bytes, item... -> 1
-- Replaces the history with the given list items ("<seq>\n<created_at>\n<json>", seqs
-- increasing from 1 or later, built by the caller; appends continue after the last) and
-- sets the conversation's creation and update times.
local last = redis.call('HMGET', KEYS[1], 'o', 'b', 'l')
if last[1] and last[1] == ARGV[3] then return changes_reply(7, 1) end
local old_bytes = tonumber(last[2] or '0')
local new_bytes = tonumber(ARGV[12])
local old_l = tonumber(last[3] or '0')
local new_l = 0
for i = 13, #ARGV do new_l = new_l + message_logical(ARGV[i]) end
local old = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
local n = #ARGV - 12
local items = {}
for i = 13, #ARGV do
  items[#items + 1] = ARGV[i]
  if #items == 500 then
    redis.call('RPUSH', KEYS[2], unpack(items))
    items = {}
  end
end
if #items > 0 then redis.call('RPUSH', KEYS[2], unpack(items)) end
if n - old ~= 0 then redis.call('INCRBY', KEYS[4], n - old) end
if new_bytes ~= old_bytes then redis.call('INCRBY', KEYS[5], new_bytes - old_bytes) end
ladjust(KEYS[5], new_l - old_l)
redis.call('HSET', KEYS[1], 'c', ARGV[2], 'u', ARGV[11], 'o', ARGV[3], 'r', 1, 'b', new_bytes,
  'l', new_l)
announce(ARGV[4], ARGV[5], ARGV[6])
local top = 0
if n > 0 then top = tonumber(string.match(ARGV[#ARGV], '^%d+')) end
change(7, 'conversation.replaced', nil, top, n)
return changes_reply(7, 1)
