-- Drop tool-usage records with timestamp < cutoff (at most ``limit``). Per-tool index keys
-- are derived from the record (value = tool name, newline, accounted bytes, newline, JSON;
-- records written before byte accounting lack the bytes line and count 0) and share the
-- slot. KEYS[5] is the shard's byte counter (the
-- logical one beside it, logical.lua). Logs one tool_usage.pruned event with the
-- number of records dropped (change block at ARGV[at], changes.lua), none when 0.
local function trim(cutoff, limit, tool_prefix, at)
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  for _, id in ipairs(old) do
    local v = redis.call('HGET', KEYS[1], id)
    if v then
      local tool, size = string.match(v, '^([^\n]*)\n(%d*)')
      redis.call('ZREM', tool_prefix .. tool, id)
      size = tonumber(size) or 0
      if size ~= 0 then redis.call('DECRBY', KEYS[5], size) end
      ladjust(KEYS[5], -tool_logical(v))
      if redis.call('HINCRBY', KEYS[4], tool, -1) <= 0 then redis.call('HDEL', KEYS[4], tool) end
      redis.call('HDEL', KEYS[1], id)
    end
    redis.call('ZREM', KEYS[2], id)
  end
  if #old > 0 then change(at, 'tool_usage.pruned', '{}', nil, #old) end
  return #old
end
