-- Conversation revisions (docs/architecture.md, "Version history"). A replace keeps the
-- messages it replaces as a revision: the conversation's message list is renamed (O(1),
-- no copy) to ``<P>crm:{tag}:<revision>:<id>``, and the conversation's revisions hash
-- ``<P>cr:{tag}:<id>`` gets ``<revision>`` = "<replaced_at>|<message count>|<actor JSON|"">"
-- and keeps in ``n`` the last number given (numbers are never reused, only a delete of
-- the conversation erases them with its revisions). The shard's revision index (scores
-- 0) lists the ids of the conversations with revisions.

-- Every revision number the hash holds.
local function revision_numbers(revisions)
  local out = {}
  for _, f in ipairs(redis.call('HKEYS', revisions)) do
    if f ~= 'n' then out[#out + 1] = tonumber(f) end
  end
  return out
end

-- Erase the conversation's revisions (``prefix``: the shard's revision messages prefix).
local function erase_revisions(revisions, index, prefix, id)
  for _, r in ipairs(revision_numbers(revisions)) do
    redis.call('DEL', prefix .. r .. ':' .. id)
  end
  redis.call('DEL', revisions)
  redis.call('ZREM', index, id)
end
