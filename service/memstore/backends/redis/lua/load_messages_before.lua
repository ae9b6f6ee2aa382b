-- KEYS: messages. ARGV: before_seq, limit|"" -> the last ``limit`` items with seq < before_seq.
-- Seqs are contiguous: list index i holds the first item's seq + i (appends add at the end,
-- replace rewrites from 1, retention trims from the head).
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return {} end
local base = tonumber(string.match(head, '^%d+'))
local hi = math.min(redis.call('LLEN', KEYS[1]), tonumber(ARGV[1]) - base) - 1
if hi < 0 then return {} end
local lo = 0
if ARGV[2] ~= '' then lo = math.max(0, hi - tonumber(ARGV[2]) + 1) end
return redis.call('LRANGE', KEYS[1], lo, hi)
