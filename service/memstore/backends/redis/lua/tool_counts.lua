-- KEYS: records, time index, (unused), counts, bytes, change log keys (changes.lua).
-- ARGV: cutoff|"", per-tool key prefix, change block (4, changes.lua)
-- -> flat [tool, count, ...] after dropping everything older than the cutoff
if ARGV[1] ~= '' then
  while trim(ARGV[1], 1000, ARGV[2], 3) > 0 do end
end
return redis.call('HGETALL', KEYS[4])
