-- KEYS: feedback records, time index of one shard. ARGV: low, high (timestamp range holding
-- the window), hours, first, last -> {key, records, ratings, sum of ratings|"0", ...}
-- A rating is the record's data.rating when it is a JSON number (cjson: a Lua number;
-- booleans and null are not). O(records in range), each decoded here on the server.
local hours, first, last = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local found = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '(' .. ARGV[2], 'WITHSCORES')
local buckets = {}
for i = 1, #found, 2 do
  local b = bucket_of(tonumber(found[i + 1]), hours, first, last)
  if b then
    local acc = buckets[b]
    if not acc then acc = {0, 0, 0}; buckets[b] = acc end
    acc[1] = acc[1] + 1
    local v = redis.call('HGET', KEYS[1], found[i])
    if v then
      local ok, record = pcall(cjson.decode, v)
      if ok and type(record) == 'table' and type(record.data) == 'table' then
        local r = record.data.rating
        if type(r) == 'number' then acc[2] = acc[2] + 1; acc[3] = acc[3] + r end
      end
    end
  end
end
local out = {}
for key, acc in pairs(buckets) do
  out[#out + 1] = key; out[#out + 1] = acc[1]; out[#out + 1] = acc[2]
  out[#out + 1] = string.format('%.17g', acc[3])
end
return out
