-- Conversation revisions (docs/architecture.md, "Version history"). A replace keeps the
-- messages it replaces as a revision: the conversation's message list is renamed (O(1),
-- no copy) to ``<P>crm:{tag}:<revision>:<id>``, and the conversation's revisions hash
-- ``<P>cr:{tag}:<id>`` gets ``<revision>`` = "<replaced_at>|<message count>|<actor JSON|"">".
-- A revision is numbered 1 + the highest stored (retention never removes the newest, so
-- numbers are not reused while any is stored). The shard's revision index (scores 0)
-- lists the ids of the conversations with revisions.

-- Every revision number the hash holds, highest first.
local function revision_numbers(revisions)
  local out = {}
  for _, f in ipairs(redis.call('HKEYS', revisions)) do out[#out + 1] = tonumber(f) end
  table.sort(out, function(a, b) return a > b end)
  return out
end

-- Erase the conversation's revisions (``prefix``: the shard's revision messages prefix)
-- -> how many there were.
local function erase_revisions(revisions, index, prefix, id)
  local numbers = revision_numbers(revisions)
  for _, r in ipairs(numbers) do redis.call('DEL', prefix .. r .. ':' .. id) end
  redis.call('DEL', revisions)
  redis.call('ZREM', index, id)
  return #numbers
end
