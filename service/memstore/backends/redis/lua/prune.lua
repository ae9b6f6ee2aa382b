-- Drop up to ``limit`` expired members from the shard's indexes and their bytes from its
-- counter (KEYS: index, expiry, sizes, bytes, creation times, history index, change log
-- keys), moving each expired record into its history (history.lua: numbering goes on
-- after it) and logging entity.expired for each (change block at ARGV[at], changes.lua;
-- its names JSON holds the entity type; ARGV[at + 4], ARGV[at + 5], ARGV[at + 6] are the
-- shard's entity, history and version key prefixes; the version comes from the sizes hash,
-- "<bytes>:<version>", when it has one). Listing and counting prune at most 256 per
-- call, so one call stays short; their correctness never depends on the pruning (expired
-- members are skipped/subtracted using the expiry index). ``ENTITY_BYTES`` prunes all.
local function prune(now, limit, at)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
  if #expired == 0 then return 0 end
  local sizes = redis.call('HMGET', KEYS[3], unpack(expired))
  local freed = 0
  for i, s in ipairs(sizes) do
    local version = nil
    if s then
      freed = freed + tonumber(string.match(s, '^%d+'))
      version = string.match(s, ':(%d+)$')
    end
    local id = expired[i]
    local key = ARGV[at + 4] .. id
    -- a record written before history has a Redis TTL and may be gone already
    local cur = header(key)
    if cur then keep_version(cur, key, ARGV[at + 5] .. id, KEYS[6], id, ARGV[at + 6]) end
    change(at, 'entity.expired', nil, version, nil, id)
  end
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('ZREM', KEYS[5], unpack(expired))
  redis.call('ZREM', KEYS[2], unpack(expired))
  redis.call('HDEL', KEYS[3], unpack(expired))
  if freed ~= 0 then redis.call('DECRBY', KEYS[4], freed) end
  return #expired
end
