-- KEYS: one shard's conversation index, its message bytes counter, or its feedback
-- records, their bytes counter. ARGV: "c" and the shard's message list prefix
-- ("<prefix>m:{<tag>}:"), or "f" -> the shard's logical payload bytes (the counter,
-- backfilled on first use: logical.lua). The conversation backfill also gives each
-- conversation's meta hash its logical bytes (field 'l', as 'b' holds the stored ones);
-- the meta keys and message lists share the index's hash tag, so one slot.
if ARGV[1] == 'c' then
  return backfilled(KEYS[2], function()
    local total = 0
    for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
      local key = ARGV[2] .. id
      local sum = 0
      local from = 0
      while true do
        local items = redis.call('LRANGE', key, from, from + 999)
        for _, item in ipairs(items) do sum = sum + message_logical(item) end
        if #items < 1000 then break end
        from = from + 1000
      end
      if redis.call('EXISTS', ARGV[3] .. id) == 1 then redis.call('HSET', ARGV[3] .. id, 'l', sum) end
      total = total + sum
    end
    return total
  end)
end
return backfilled(KEYS[2], function()
  local total = 0
  for _, value in ipairs(redis.call('HVALS', KEYS[1])) do total = total + feedback_logical(value) end
  return total
end)
