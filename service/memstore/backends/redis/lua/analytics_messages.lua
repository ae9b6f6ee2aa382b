-- KEYS: conversation index of one shard. ARGV: message list key prefix ("<prefix>m:{<tag>}:"),
-- hours, first, last
-- -> {conversations, messages, payload bytes, oldest|"", newest|"", key, count, ...}
-- Items are "<seq>\n<created_at>\n<JSON>" (push.lua); every message of the shard is read
-- here, on the server, 1000 at a time: O(messages of the shard).
-- The message lists are not in KEYS: their ids come from the index read here, so the caller
-- cannot name them in advance. They share the index's hash tag (one slot, so Cluster
-- accepts it), but a Redis that enforces declared keys would refuse this script.
local prefix = ARGV[1]
local hours, first, last = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local n, bytes, oldest, newest, lo, hi = 0, 0, '', '', 0, 0
local counts = {}
for _, id in ipairs(ids) do
  local key = prefix .. id
  local from = 0
  while true do
    local items = redis.call('LRANGE', key, from, from + 999)
    for _, item in ipairs(items) do
      local seq, ts = string.match(item, '^(%d+)\n([^\n]*)\n')
      local c = tonumber(ts)
      n = n + 1
      bytes = bytes + string.len(item) - string.len(seq) - string.len(ts) - 2
      if oldest == '' or c < lo then oldest, lo = ts, c end
      if newest == '' or c > hi then newest, hi = ts, c end
      local b = bucket_of(c, hours, first, last)
      if b then tally(counts, b) end
    end
    if #items < 1000 then break end
    from = from + 1000
  end
end
return flat_counts({#ids, n, bytes, oldest, newest}, counts)
