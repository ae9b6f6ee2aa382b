-- Read-only. KEYS: entity, history. ARGV: at
-- -> the stored entity's value when it was saved at or before ``at``, else {row} of the
-- highest history row (history.lua) saved at or before it, else nil.
local at = tonumber(ARGV[1])
local cur = header(KEYS[1])
if cur and tonumber(cur[3]) <= at then return redis.call('GET', KEYS[1]) end
local from = 0
while true do
  local rows = redis.call('ZREVRANGE', KEYS[2], from, from + 31)
  if #rows == 0 then return nil end
  for _, row in ipairs(rows) do
    local _, saved = row_fields(row)
    if saved <= at then return {row} end
  end
  from = from + 32
end
