-- KEYS: accessed (the shard's hash id -> last recorded read). ARGV: at, entity key prefix,
-- id... Records a read at ``at`` of each entity that exists; a time never moves back.
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('EXISTS', ARGV[2] .. id) == 1 then
    local a = redis.call('HGET', KEYS[1], id)
    if not a or tonumber(a) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], id, ARGV[1]) end
  end
end
return 1
