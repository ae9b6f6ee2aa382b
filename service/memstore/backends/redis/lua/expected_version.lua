-- The stored version a conditional write compares with: that of the live entity (``cur`` =
-- header(KEYS[1])), false when there is none or it has expired by ``now``.
local function live_version(cur, now)
  if cur and (cur[4] == '' or tonumber(cur[4]) > now) then return tonumber(cur[1]) end
  return false
end

-- The contract's expected_version rules (memstore.backends.common.check_expected_version):
-- nil when the write may go on, else the script's reply {"conflict", current|""}.
local function conflict(expected, current)
  if expected == '' then return nil end
  expected = tonumber(expected)
  if (expected == 0 and current) or (expected > 0 and current ~= expected) then
    if current then return {'conflict', tostring(current)} end
    return {'conflict', ''}
  end
  return nil
end
