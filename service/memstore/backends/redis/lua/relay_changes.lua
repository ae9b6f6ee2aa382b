-- KEYS: the namespace's log stream, its state hash.
-- ARGV: per outbox: its name (the state field holding its last relayed id), the number of
--       entries, then per entry, oldest first: outbox id and its six fields (time, kind,
--       names, version, count, entity id).
-- -> per outbox, in ARGV order, its last relayed id ("" if none yet).
-- Appends each entry newer than its outbox's last relayed id with the next position, so
-- relaying the same entries again (two writers of one slot, a retry, the sweep) appends
-- each exactly once and in the outbox's order. Outbox ids are "<ms>-<seq>" (XADD *).
local out = {}
local j = 1
while j <= #ARGV do
  local outbox, n = ARGV[j], tonumber(ARGV[j + 1])
  j = j + 2
  local last = redis.call('HGET', KEYS[2], outbox)
  local lms, lseq = -1, -1
  if last then
    local m, s = string.match(last, '^(%d+)-(%d+)$')
    lms, lseq = tonumber(m), tonumber(s)
  end
  local moved = false
  for _ = 1, n do
    local m, s = string.match(ARGV[j], '^(%d+)-(%d+)$')
    m, s = tonumber(m), tonumber(s)
    if m > lms or (m == lms and s > lseq) then
      local pos = redis.call('HINCRBY', KEYS[2], 'p', 1)
      redis.call('XADD', KEYS[1], pos .. '-0', 't', ARGV[j + 1], 'k', ARGV[j + 2],
        'e', ARGV[j + 3], 'v', ARGV[j + 4], 'n', ARGV[j + 5], 'i', ARGV[j + 6])
      lms, lseq, last, moved = m, s, ARGV[j], true
    end
    j = j + 7
  end
  if moved then redis.call('HSET', KEYS[2], outbox, last) end
  out[#out + 1] = last or ''
end
return out
