-- Read-only. KEYS: entity, history. ARGV: at, version key prefix, id
-- -> the stored entity's value when it was saved at or before ``at``, else {member,
-- score, row} of the highest history row saved at or before it (as entity_versions.lua
-- gives them), else nil.
local at = tonumber(ARGV[1])
local cur = header(KEYS[1])
if cur and tonumber(cur[3]) <= at then return redis.call('GET', KEYS[1]) end
local from = 0
while true do
  local rows = redis.call('ZREVRANGE', KEYS[2], from, from + 31, 'WITHSCORES')
  if #rows == 0 then return nil end
  for j = 1, #rows, 2 do
    local saved = saved_at(rows[j], rows[j + 1], ARGV[2], ARGV[3])
    if saved and saved <= at then
      if tonumber(rows[j + 1]) % 2 == 1 then return {rows[j], rows[j + 1], false} end
      return {rows[j], rows[j + 1], redis.call('GET', ARGV[2] .. rows[j] .. ':' .. ARGV[3])}
    end
  end
  from = from + 32
end
