-- Version history (docs/architecture.md, "Version history"). Each entity has one sorted
-- set ``<P>eh:{tag}:<id>`` of its past versions and tombstones, in its own slot: score
-- 2 x version, plus 1 for the tombstone a delete left at that version (so a reverse range
-- gives the tombstone before the live row of the same version), member the row itself:
-- ``<version>|<saved_at>|<expires|"">|<"d"|"">|<actor JSON|"">\n<payload>`` (a tombstone
-- has no payload). The member being the row, one ZADD stores it. The shard's history
-- index (KEYS: ``ehi``) lists the ids that have rows, lexically, scores 0.

-- Store ``row`` at ``score``, replacing a row already there (an import may have put one).
local function put_row(history, score, row)
  redis.call('ZREMRANGEBYSCORE', history, score, score)
  redis.call('ZADD', history, score, row)
end

-- Move the stored entity (``cur`` = header(key)) into its history: a save replaces it,
-- a delete or a purge of its expiry removes it. The caller then overwrites or deletes
-- ``key``.
local function keep_version(cur, key, history, index, id)
  local row = cur[1] .. '|' .. cur[3] .. '|' .. cur[4] .. '||' .. cur[8] .. '\n'
    .. redis.call('GETRANGE', key, cur[6], -1)
  put_row(history, 2 * tonumber(cur[1]), row)
  redis.call('ZADD', index, 0, id)
end

-- The tombstone of a delete of ``version`` at ``now`` by ``actor`` (JSON|"").
local function tombstone(history, version, now, actor)
  put_row(history, 2 * tonumber(version) + 1, version .. '|' .. now .. '||d|' .. actor .. '\n')
end

-- The highest version the history holds (0: none). A create numbers on after it.
local function top_version(history)
  local top = redis.call('ZREVRANGE', history, 0, 0, 'WITHSCORES')
  if #top == 0 then return 0 end
  return math.floor(tonumber(top[2]) / 2)
end

-- A history row's version, saved_at and whether it is a tombstone.
local function row_fields(row)
  local v, s, d = string.match(row, '^(%d+)|([^|]*)|[^|]*|([^|]*)|')
  return tonumber(v), tonumber(s), d == 'd'
end
