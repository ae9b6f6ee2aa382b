-- Version history (docs/architecture.md, "Version history"). Each entity has one sorted
-- set ``<P>eh:{tag}:<id>`` of its past versions and tombstones, in its own slot: score
-- 2 x version, plus 1 for the tombstone a delete left at that version (so a reverse range
-- gives the tombstone before the live row of the same version). A past version's member
-- is its number, and its row is the entity value exactly as it was stored, renamed to
-- ``<P>ev:{tag}:<version>:<id>`` (RENAME: O(1), the payload is never copied; its header
-- holds saved_at = updated_at, expires_at and the actor). A tombstone's member is the
-- whole row, ``<version>|<saved_at>|<actor JSON|"">``. The shard's history index (KEYS:
-- ``ehi``) lists the ids that have rows, lexically, scores 0.

-- Move the stored entity (``cur`` = header(key)) into its history (``prefix``: the
-- shard's "<P>ev:{tag}:", "" in the service's own namespaces, which keep no history): a
-- save replaces it, a delete or a purge of its expiry removes it. ``key`` no longer exists
-- afterwards. A row of the same version already there (an import may have put one) is
-- replaced.
local function keep_version(cur, key, history, index, id, prefix)
  if prefix == '' then
    redis.call('DEL', key)
    return
  end
  local row = prefix .. cur[1] .. ':' .. id
  redis.call('RENAME', key, row)
  -- a record written before history carries a Redis expiry; a history row never expires
  if cur[4] ~= '' then redis.call('PERSIST', row) end
  redis.call('ZADD', history, 2 * tonumber(cur[1]), cur[1])
  redis.call('ZADD', index, 0, id)
end

-- The tombstone of a delete of ``version`` at ``now`` by ``actor`` (JSON|""); none where
-- no history is kept (``prefix`` "", as for keep_version).
local function tombstone(history, version, now, actor, prefix)
  if prefix == '' then return end
  local score = 2 * tonumber(version) + 1
  redis.call('ZREMRANGEBYSCORE', history, score, score)
  redis.call('ZADD', history, score, version .. '|' .. now .. '|' .. actor)
end

-- The highest version the history holds (0: none). A create numbers on after it.
local function top_version(history)
  local top = redis.call('ZREVRANGE', history, 0, 0, 'WITHSCORES')
  if #top == 0 then return 0 end
  return math.floor(tonumber(top[2]) / 2)
end

-- When the history row (member, score) was saved: a tombstone says it, a past version's
-- header does (its updated_at). nil when the version's value is missing.
local function saved_at(member, score, prefix, id)
  if tonumber(score) % 2 == 1 then
    return tonumber(string.match(member, '^%d+|([^|]*)|'))
  end
  local h = header(prefix .. member .. ':' .. id)
  return h and tonumber(h[3])
end
