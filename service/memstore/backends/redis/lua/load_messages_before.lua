-- KEYS: messages. ARGV: before_seq, limit|"" -> the last ``limit`` items with seq < before_seq.
-- Seqs increase along the list; usually by 1 (appends add at the end, replace rewrites from
-- 1, retention trims from the head), so index before_seq - first seq - 1 is the answer's
-- last item; an imported conversation may have gaps, then a binary search finds it.
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return {} end
local before = tonumber(ARGV[1])
local base = tonumber(string.match(head, '^%d+'))
local hi = math.min(redis.call('LLEN', KEYS[1]), before - base) - 1
if hi < 0 then return {} end
if tonumber(string.match(redis.call('LINDEX', KEYS[1], hi), '^%d+')) >= before then
  -- seq at index 0 < before <= seq at index hi: the largest index with seq < before
  local lo_i, hi_i = 0, hi
  while hi_i - lo_i > 1 do
    local mid = math.floor((lo_i + hi_i) / 2)
    if tonumber(string.match(redis.call('LINDEX', KEYS[1], mid), '^%d+')) < before then
      lo_i = mid
    else
      hi_i = mid
    end
  end
  hi = lo_i
end
local lo = 0
if ARGV[2] ~= '' then lo = math.max(0, hi - tonumber(ARGV[2]) + 1) end
return redis.call('LRANGE', KEYS[1], lo, hi)
