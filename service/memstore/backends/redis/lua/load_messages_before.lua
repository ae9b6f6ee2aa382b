-- KEYS: messages. ARGV: before_seq, limit|"" -> the last ``limit`` items with seq < before_seq.
-- List index i always holds seq i + 1 (append-only; replace rewrites from 1).
local hi = math.min(redis.call('LLEN', KEYS[1]), tonumber(ARGV[1]) - 1) - 1
if hi < 0 then return {} end
local lo = 0
if ARGV[2] ~= '' then lo = math.max(0, hi - tonumber(ARGV[2]) + 1) end
return redis.call('LRANGE', KEYS[1], lo, hi)
