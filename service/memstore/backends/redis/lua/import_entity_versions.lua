-- KEYS: history index, history. ARGV: id, then score, row for each row
-- -> 1. Writes history rows as given (a dump import), replacing a row of the same
-- version and kind (live or tombstone); the stored entity is not touched.
for i = 2, #ARGV, 2 do put_row(KEYS[2], ARGV[i], ARGV[i + 1]) end
if #ARGV > 1 then redis.call('ZADD', KEYS[1], 0, ARGV[1]) end
return 1
