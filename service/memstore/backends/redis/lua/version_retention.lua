-- Version retention (memstore.core.retention: ``versions_keep``, ``versions_saved_before``),
-- judged at one instant. keep: how many of a key's newest past rows stay (nil: no bound);
-- saved: rows saved (replaced) before it go (nil: no bound).

-- The scores (history.lua) of the history rows of one entity that go. A key without a
-- live record keeps its newest row (its tombstone, or its expired record not yet moved
-- into the history), which holds its numbering; the live record is never a history row.
local function doomed_versions(key, history, now, keep, saved)
  local cur = header(key)
  local rank, guard = 0, not cur
  if cur and cur[4] ~= '' and tonumber(cur[4]) <= now then rank = 1 end
  local rows = redis.call('ZREVRANGE', history, 0, -1, 'WITHSCORES')
  local out = {}
  for j = 1, #rows, 2 do
    local _, s = row_fields(rows[j])
    if not (guard and j == 1) and ((keep and rank >= keep) or (saved and s < saved)) then
      out[#out + 1] = rows[j + 1]
    end
    rank = rank + 1
  end
  return out
end

-- The revision numbers (revisions.lua) of one conversation that go, newest first.
local function doomed_revisions(revisions, keep, saved)
  local numbers = revision_numbers(revisions)
  table.sort(numbers, function(a, b) return a > b end)
  local out = {}
  for rank, r in ipairs(numbers) do
    local at = tonumber(string.match(redis.call('HGET', revisions, r), '^[^|]*'))
    if (keep and rank > keep) or (saved and at < saved) then out[#out + 1] = r end
  end
  return out
end
