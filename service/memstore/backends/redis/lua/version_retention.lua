-- Version retention (memstore.core.retention, ``Cutoffs.version_reason``), judged at one
-- instant. A key's history rows ranked newest first (rank 0 the newest) go when the rank
-- is >= keep ('max_versions', judged first) or the row was saved (a revision replaced)
-- before ``saved`` ('max_age'); keep, saved: nil when the rule is off.
local function version_reason(rank, saved_at, holds_numbering, keep, saved)
  if rank == 0 and holds_numbering then return nil end
  if keep and rank >= keep then return 'max_versions' end
  if saved and saved_at < saved then return 'max_age' end
  return nil
end

-- {score, reason, ...} of the history rows (history.lua) of one entity that go. Rank 0
-- of a key with no entity row stored (a tombstone, or a purged expired version) holds
-- its numbering and stays; the entity row itself is never a history row.
local function doomed_versions(key, history, keep, saved)
  local stored = redis.call('EXISTS', key) == 1
  local rows = redis.call('ZREVRANGE', history, 0, -1, 'WITHSCORES')
  local out = {}
  for j = 1, #rows, 2 do
    local _, s = row_fields(rows[j])
    local why = version_reason((j - 1) / 2, s, not stored, keep, saved)
    if why then
      out[#out + 1] = rows[j + 1]
      out[#out + 1] = why
    end
  end
  return out
end

-- {revision, reason, ...} of the revisions (revisions.lua) of one conversation that go,
-- newest first. The newest holds the numbering and stays.
local function doomed_revisions(revisions, keep, saved)
  local out = {}
  for rank, r in ipairs(revision_numbers(revisions)) do
    local at = tonumber(string.match(redis.call('HGET', revisions, r), '^[^|]*'))
    local why = version_reason(rank - 1, at, true, keep, saved)
    if why then
      out[#out + 1] = r
      out[#out + 1] = why
    end
  end
  return out
end
