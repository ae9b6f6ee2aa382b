-- KEYS, ARGV: as ENTITY_BYTES -> logical payload bytes of the shard's live entities (the
-- counter, after pruning; backfilled on first use: logical.lua). The backfill counts each
-- indexed entity still stored and gives the sizes entries written before logical counting
-- their logical bytes (a key Redis expired itself already counts nothing).
while prune(ARGV[1], 1000, 2) > 0 do end
return backfilled(KEYS[4], function()
  local total = 0
  local from = 0
  while true do
    local ids = redis.call('ZRANGE', KEYS[1], from, from + 999)
    for _, id in ipairs(ids) do
      local key = ARGV[6] .. id
      local cur = header(key)
      if cur then
        local n = entity_logical(key, cur)
        total = total + n
        local s = redis.call('HGET', KEYS[3], id)
        if s and not string.find(s, ',', 1, true) then
          redis.call('HSET', KEYS[3], id,
            sized(string.match(s, '^%d+'), n, string.match(s, ':(%d+)$')))
        end
      end
    end
    if #ids < 1000 then break end
    from = from + 1000
  end
  return total
end)
