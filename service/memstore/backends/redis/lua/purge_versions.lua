-- KEYS: history index. ARGV: after|"" (exclusive), budget, entity key prefix, history key
-- prefix (the shard's "<P>e:{tag}:", "<P>eh:{tag}:")
-- -> {last id examined|"", "1" when no more, rows removed}. Erases the shard's history
-- rows (history.lua), except rank 0 of a key with no entity row stored (it holds the
-- numbering), examining at most ``budget`` ids.
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, ARGV[2])
local removed, last = 0, ''
for _, id in ipairs(ids) do
  local history = ARGV[4] .. id
  if redis.call('EXISTS', ARGV[3] .. id) == 1 then
    removed = removed + redis.call('ZCARD', history)
    redis.call('DEL', history)
    redis.call('ZREM', KEYS[1], id)
  else
    removed = removed + redis.call('ZREMRANGEBYRANK', history, 0, -2)
  end
  last = id
end
local done = ''
if #ids < tonumber(ARGV[2]) then done = '1' end
return {last, done, removed}
