-- KEYS: the namespace's log stream. ARGV: events to keep at most, cutoff time
-- -> 1 when there may be more to trim (this call stopped after 10,000 events), else 0.
-- Keeps the newest ARGV[1] events, then drops events from the oldest on while their time
-- is before the cutoff (times follow positions up to the spread between writers; an
-- event is never removed ahead of an older position). The state hash, and with it the
-- last position, is untouched: positions are never reused.
redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
local cutoff = tonumber(ARGV[2])
for _ = 1, 100 do
  local batch = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)
  if #batch == 0 then return 0 end
  for _, entry in ipairs(batch) do
    -- entry = {id, {'t', time, ...}}
    if tonumber(entry[2][2]) >= cutoff then
      redis.call('XTRIM', KEYS[1], 'MINID', entry[1])
      return 0
    end
  end
  local pos = tonumber(string.match(batch[#batch][1], '^(%d+)'))
  redis.call('XTRIM', KEYS[1], 'MINID', (pos + 1) .. '-0')
end
return 1
