-- KEYS: the namespace's log stream, its state hash. ARGV: first position wanted, limit
-- -> {last position, first retained position, entries} in one atomic read, so the page
-- and its bounds agree.
local last = tonumber(redis.call('HGET', KEYS[2], 'p') or '0')
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local first = last + 1
if #head > 0 then first = tonumber(string.match(head[1][1], '^(%d+)')) end
return {last, first, redis.call('XRANGE', KEYS[1], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])}
