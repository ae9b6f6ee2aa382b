-- KEYS: as TOOL_COUNTS. ARGV: as TOOL_COUNTS -> payload bytes of the shard
if ARGV[1] ~= '' then
  while trim(ARGV[1], 1000, ARGV[2], 3) > 0 do end
end
return tonumber(redis.call('GET', KEYS[5]) or '0')
