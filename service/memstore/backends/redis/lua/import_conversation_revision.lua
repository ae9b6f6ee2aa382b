-- KEYS: revisions, revision index, the revision's messages. ARGV: conversation id,
-- revision, "<replaced_at>|<message count>|<actor JSON|"">", item... -> 1
-- Writes one revision as given (a dump import; items as the conversation's list holds
-- them), replacing one of the same number; later replaces number on after it.
redis.call('DEL', KEYS[3])
local items = {}
for i = 4, #ARGV do
  items[#items + 1] = ARGV[i]
  if #items == 500 then
    redis.call('RPUSH', KEYS[3], unpack(items))
    items = {}
  end
end
if #items > 0 then redis.call('RPUSH', KEYS[3], unpack(items)) end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
