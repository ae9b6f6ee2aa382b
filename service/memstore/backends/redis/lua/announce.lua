-- Cross-replica change message (an entity's cache key, a conversation's change key) in
-- the same atomic step as the write: ``PUBLISH`` on standalone, ``SPUBLISH`` on a cluster
-- on the invalidation channel of the script's own slot (see keys.py), so the script stays
-- single-slot. ``how`` "" or absent: no message.
local function announce(how, channel, message)
  if how and how ~= '' then redis.call(how, channel, message) end
end
