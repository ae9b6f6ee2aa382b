-- KEYS: tool records, a time index (all tools, or one tool's). ARGV: low, high (timestamp
-- range holding the window), hours, first, last, limit
-- -> per tool with a call in the window: {tool, calls, successes, {key, calls, successes,
--    ...}, {durations ascending}, {slowest ids}, {failed ids}}
-- Values are "tool\nbytes\nJSON" with the record's own fields last in the JSON
-- (duration_ms, success, timestamp, conversation_id: a validated name), so an anchored
-- match reads them whatever the input and output hold. The slowest ids are the shard's
-- first ``limit`` by (duration, timestamp) descending plus every tie with the last of them,
-- the failed ones likewise by timestamp: the caller orders ties by id (byte order) across
-- shards, which Lua cannot (its string order follows the server's locale).
local hours, first, last = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local limit = tonumber(ARGV[6])
local found = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '(' .. ARGV[2], 'WITHSCORES')
local tools, names = {}, {}
for i = 1, #found, 2 do
  local id, ts = found[i], tonumber(found[i + 1])
  local b = bucket_of(ts, hours, first, last)
  if b then
    local v = redis.call('HGET', KEYS[1], id)
    if v then
      local tool = string.match(v, '^([^\n]*)\n')
      local d, ok = string.match(v,
        '"duration_ms":([^,]+),"success":(%a+),"timestamp":[^,]+,"conversation_id":[^,]*}$')
      local t = tools[tool]
      if not t then
        t = {calls = 0, ok = 0, series = {}, calls_by = {}, durs = {}, rows = {}}
        tools[tool] = t
        names[#names + 1] = tool
      end
      t.calls = t.calls + 1
      local s = t.series[b]
      if not s then s = {0, 0}; t.series[b] = s end
      s[1] = s[1] + 1
      if ok == 'true' then t.ok = t.ok + 1; s[2] = s[2] + 1 end
      local dn = tonumber(d)
      t.durs[#t.durs + 1] = dn
      t.rows[#t.rows + 1] = {dn, ts, id, ok == 'true'}
    end
  end
end
local function top(rows, before, same)
  table.sort(rows, before)
  local out = {}
  for i, r in ipairs(rows) do
    if i > limit and not (limit > 0 and same(r, rows[limit])) then break end
    out[#out + 1] = r[3]
  end
  return out
end
local function slower(a, b) return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2]) end
local function tie(a, b) return a[1] == b[1] and a[2] == b[2] end
local function later(a, b) return a[2] > b[2] end
local function same_time(a, b) return a[2] == b[2] end
local reply = {}
for _, tool in ipairs(names) do
  local t = tools[tool]
  local series = {}
  for key, s in pairs(t.series) do
    series[#series + 1] = key; series[#series + 1] = s[1]; series[#series + 1] = s[2]
  end
  table.sort(t.durs)
  local durs = {}
  for i, d in ipairs(t.durs) do durs[i] = string.format('%.17g', d) end
  local failed = {}
  for _, r in ipairs(t.rows) do if not r[4] then failed[#failed + 1] = r end end
  reply[#reply + 1] = {tool, t.calls, t.ok, series, durs, top(t.rows, slower, tie),
    top(failed, later, same_time)}
end
return reply
