-- Analytics buckets (memstore.core.analytics): a time's hour is floor(t / 3600) in doubles,
-- as in Python and SQLite; a bucket is hour // hours. ``bucket_of`` returns the key, or
-- false when it is outside first..last. Times are compared as numbers, returned as the
-- strings they were stored as (Python reprs: exact round trip).
local function bucket_of(ts, hours, first, last)
  local key = math.floor(math.floor(ts / 3600) / hours)
  if key < first or key > last then return false end
  return key
end

local function tally(counts, key)
  counts[key] = (counts[key] or 0) + 1
end

local function flat_counts(out, counts)
  for key, n in pairs(counts) do
    out[#out + 1] = key
    out[#out + 1] = n
  end
  return out
end
