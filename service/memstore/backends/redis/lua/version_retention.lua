-- Version retention (memstore.core.retention, ``Cutoffs.version_reason``), judged at one
-- instant. A key's history rows ranked newest first (rank 0 the newest) go when the rank
-- is >= keep ('max_versions', judged first) or the row was saved (a revision replaced)
-- before ``saved`` ('max_age'); keep, saved: nil when the rule is off.
local function version_reason(rank, saved_at, holds_numbering, keep, saved)
  if rank == 0 and holds_numbering then return nil end
  if keep and rank >= keep then return 'max_versions' end
  if saved and saved_at and saved_at < saved then return 'max_age' end
  return nil
end

-- {score, reason, ...} of the history rows (history.lua) of entity ``id`` that go
-- (``key``, ``history``: its keys; ``prefix``: the shard's version key prefix). Rank 0 of
-- a key with no entity row stored (a tombstone, or a purged expired version) holds its
-- numbering and stays; the entity row itself is never a history row.
local function doomed_versions(key, history, prefix, id, keep, saved)
  local stored = redis.call('EXISTS', key) == 1
  local rows = redis.call('ZREVRANGE', history, 0, -1, 'WITHSCORES')
  local out = {}
  for j = 1, #rows, 2 do
    local rank = (j - 1) / 2
    local at = nil
    -- a row's time is read only when the age rule may decide
    if saved and not (keep and rank >= keep) then
      at = saved_at(rows[j], rows[j + 1], prefix, id)
    end
    local why = version_reason(rank, at, not stored, keep, saved)
    if why then
      out[#out + 1] = rows[j + 1]
      out[#out + 1] = why
    end
  end
  return out
end

-- Remove history row ``score`` of entity ``id`` (and the stored value of a past version).
local function drop_version(history, prefix, id, score)
  if tonumber(score) % 2 == 0 then
    redis.call('DEL', prefix .. math.floor(tonumber(score) / 2) .. ':' .. id)
  end
  redis.call('ZREMRANGEBYSCORE', history, score, score)
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
