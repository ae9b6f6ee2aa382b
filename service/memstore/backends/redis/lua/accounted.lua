-- Bytes the shard counter holds for entity ARGV[1] (cur = header(KEYS[1]) or false).
-- TTL'd entities: their entry in the sizes hash, "<bytes>:<version>" (gone once pruned);
-- others: the payload.
local function accounted(cur, sizes_key)
  local s = redis.call('HGET', sizes_key, ARGV[1])
  if s then return tonumber(string.match(s, '^%d+')) end
  if cur and cur[4] == '' then
    return redis.call('STRLEN', KEYS[1]) - cur[6]
  end
  return 0
end
