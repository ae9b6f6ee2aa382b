-- KEYS: the namespace's log stream, its state hash.
-- ARGV: outbox name (the state field holding its last relayed id), then per outbox entry,
--       oldest first: outbox id and its six fields (time, kind, names, version, count, id).
-- -> the outbox's last relayed id ("" if none yet).
-- Appends each entry newer than the outbox's last relayed id with the next position, so
-- relaying the same entries again (two writers of one shard, a retry, the sweep) appends
-- each exactly once and in the outbox's order. Outbox ids are "<ms>-<seq>" (XADD *).
local last = redis.call('HGET', KEYS[2], ARGV[1])
local lms, lseq = -1, -1
if last then
  local m, s = string.match(last, '^(%d+)-(%d+)$')
  lms, lseq = tonumber(m), tonumber(s)
end
local moved = false
for j = 2, #ARGV, 7 do
  local m, s = string.match(ARGV[j], '^(%d+)-(%d+)$')
  m, s = tonumber(m), tonumber(s)
  if m > lms or (m == lms and s > lseq) then
    local pos = redis.call('HINCRBY', KEYS[2], 'p', 1)
    redis.call('XADD', KEYS[1], pos .. '-0', 't', ARGV[j + 1], 'k', ARGV[j + 2],
      'e', ARGV[j + 3], 'v', ARGV[j + 4], 'n', ARGV[j + 5], 'i', ARGV[j + 6])
    lms, lseq, last, moved = m, s, ARGV[j], true
  end
end
if moved then redis.call('HSET', KEYS[2], ARGV[1], last) end
return last or ''
