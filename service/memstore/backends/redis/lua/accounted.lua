-- Bytes the shard counter holds for entity ARGV[1] (cur = header(KEYS[1]) or false).
-- TTL'd entities: their entry in the sizes hash, "<bytes>[,<logical bytes>]:<version>"
-- (gone once pruned); others: the payload.
local function accounted(cur, sizes_key)
  local s = redis.call('HGET', sizes_key, ARGV[1])
  if s then return tonumber(string.match(s, '^%d+')) end
  if cur and cur[4] == '' then
    return redis.call('STRLEN', KEYS[1]) - cur[6]
  end
  return 0
end

-- Logical bytes the shard's logical counter holds for the same entity: the record's own
-- (logical.lua) while it is stored, else (a key Redis expired itself, written before
-- history) its sizes entry's; an entry written before logical counting has none, and the
-- backfill counted nothing for a key already gone.
local function laccounted(cur, sizes_key)
  local s = redis.call('HGET', sizes_key, ARGV[1])
  if cur and (s or cur[4] == '') then return entity_logical(KEYS[1], cur) end
  if s then return tonumber(string.match(s, '^%d+,(%d+):')) or 0 end
  return 0
end

-- The sizes hash entry of a TTL'd entity
local function sized(size, lsize, version)
  return size .. ',' .. lsize .. ':' .. version
end
