-- KEYS: history index. ARGV: after|"" (exclusive), budget, entity, history and version
-- key prefixes (the shard's "<P>e:{tag}:", "<P>eh:{tag}:", "<P>ev:{tag}:")
-- -> {last id examined|"", "1" when no more, rows removed}. Erases the shard's history
-- rows (history.lua), except rank 0 of a key with no entity row stored (it holds the
-- numbering), examining at most ``budget`` ids.
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, ARGV[2])
local removed, last = 0, ''
for _, id in ipairs(ids) do
  local history = ARGV[4] .. id
  local stored = redis.call('EXISTS', ARGV[3] .. id) == 1
  local rows = redis.call('ZRANGE', history, 0, -1, 'WITHSCORES')
  -- ascending: the last row is rank 0
  local upto = #rows
  if not stored then upto = #rows - 2 end
  for j = 1, upto, 2 do
    drop_version(history, ARGV[5], id, rows[j + 1])
    removed = removed + 1
  end
  if stored then redis.call('ZREM', KEYS[1], id) end
  last = id
end
local done = ''
if #ids < tonumber(ARGV[2]) then done = '1' end
return {last, done, removed}
