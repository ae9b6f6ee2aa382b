-- Read-only. KEYS: revisions, the revision's messages. ARGV: revision
-- -> {"<replaced_at>|<count>|<actor>" or nil, {item, ...}} (revisions.lua), read together.
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
