-- The change log (docs/architecture.md, "Change log"). A script that changes something
-- calls ``change`` once per event. ARGV[at .. at + 3] is the script's change block:
-- mode, time, outbox trim bound, the event's names as JSON (entity type and id,
-- conversation, tool, record id, actor); the last two KEYS are where events go:
-- * 'log' (standalone Redis): the namespace's log stream and its state hash. The event
--   takes the next position (state field 'p') as its stream id ``<position>-0``, in the
--   write's own atomic step.
-- * 'outbox' (Redis Cluster, where the log lives in another slot): the shard's outbox
--   stream (given twice). Its order is the order of the shard's writes; the writer moves
--   the entries to the log with relay_changes.lua before it returns, and a sweep moves
--   what a writer that died left. The trim bound drops outbox entries already relayed
--   ("": none known).
-- * absent or "": no change log.
-- Every event has the same six fields (a stream then stores the names once per node):
-- t time, k kind, e names JSON, v version, n count, i entity id ("" = none).
local function change(at, kind, names, version, count, id)
  local mode = ARGV[at]
  if not mode or mode == '' then return end
  local sid = '*'
  if mode == 'log' then sid = redis.call('HINCRBY', KEYS[#KEYS], 'p', 1) .. '-0' end
  redis.call('XADD', KEYS[#KEYS - 1], sid, 't', ARGV[at + 1], 'k', kind,
    'e', names or ARGV[at + 3], 'v', version or '', 'n', count or '', 'i', id or '')
end

-- A write script's reply. In outbox mode {reply, entries the writer relays}: the outbox's
-- entries after the trim bound, oldest first, at most 100 (the writer reads on when there
-- are more); otherwise the reply itself.
local function changes_reply(at, reply)
  if ARGV[at] ~= 'outbox' then return reply end
  if ARGV[at + 2] ~= '' then redis.call('XTRIM', KEYS[#KEYS - 1], 'MINID', ARGV[at + 2]) end
  if reply == nil then reply = false end
  return {reply, redis.call('XRANGE', KEYS[#KEYS - 1], '-', '+', 'COUNT', 100)}
end
