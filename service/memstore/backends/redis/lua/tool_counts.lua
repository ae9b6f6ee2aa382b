-- KEYS: records, time index, (unused), counts, bytes. ARGV: cutoff|"", per-tool key prefix
-- -> flat [tool, count, ...] after dropping everything older than the cutoff
if ARGV[1] ~= '' then
  while trim(ARGV[1], 1000, ARGV[2]) > 0 do end
end
return redis.call('HGETALL', KEYS[4])
