-- KEYS: a time index (scores = timestamps). ARGV: low, high (a timestamp range holding the
-- window), hours, first, last -> {key, count, ...}. Reads scores only: O(items in range).
local hours, first, last = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local found = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '(' .. ARGV[2], 'WITHSCORES')
local counts = {}
for i = 2, #found, 2 do
  local b = bucket_of(tonumber(found[i]), hours, first, last)
  if b then tally(counts, b) end
end
return flat_counts({}, counts)
