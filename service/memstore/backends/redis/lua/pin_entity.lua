-- KEYS: entity. ARGV: now, "1" (pin) | "" (unpin) -> the entity's value after the change,
-- or nil when there is no live entity. The header's sixth field is the pin; the version,
-- times, op id, actor, payload and expiry stay (pinning makes no version).
local cur = header(KEYS[1])
if not cur then return nil end
if cur[4] ~= '' and tonumber(cur[4]) <= tonumber(ARGV[1]) then return nil end
if cur[7] == ARGV[2] then return redis.call('GET', KEYS[1]) end
local value = head(cur[1], cur[2], cur[3], cur[4], cur[5], ARGV[2], cur[8]) .. '\n'
  .. redis.call('GETRANGE', KEYS[1], cur[6], -1)
redis.call('SET', KEYS[1], value, 'KEEPTTL')
return value
