-- KEYS: as TOOL_COUNTS. ARGV: as TOOL_COUNTS -> logical payload bytes of the shard (the
-- counter, after trimming; backfilled on first use: logical.lua)
if ARGV[1] ~= '' then
  while trim(ARGV[1], 1000, ARGV[2], 3) > 0 do end
end
return backfilled(KEYS[5], function()
  local total = 0
  for _, value in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tool_logical(value) end
  return total
end)
