-- KEYS: one shard's entity index, conversation index, tool records or feedback records.
-- ARGV: "e" | "c" | "t" | "f", then for "e" the shard's entity key prefix
-- ("<prefix>e:{<tag>}:"), for "c" its message list prefix ("<prefix>m:{<tag>}:")
-- -> the shard's logical payload bytes: each payload's own compact JSON size, which for a
-- sealed payload (compressed and/or encrypted, core/payload_codec.py) is its envelope's
-- "n" and otherwise the stored JSON's length (what the byte counters count).
-- Reads every record of the shard, on the server: O(records of the shard).
-- An envelope is written by orjson in the order v, c, k, n, b, so "n" is in its first
-- bytes; a payload whose top level is the reserved key is always an envelope (the codec
-- wraps a plain one that has it), and entity and tool-use envelopes hold nothing else
-- (a feedback's may start with its clear "rating"). Entity keys and message lists are
-- not in KEYS (their ids come from the index read here), as in analytics_messages.lua:
-- they share the index's hash tag, so one slot. A tool use or feedback record of another
-- layout (none is written today) counts as stored (a feedback: its whole record), never
-- an error.
local HEAD = '{"memstore:sealed":{"v":1,[^{}]-"n":(%d+),"b":"'
local WHOLE = '(){"memstore:sealed":{"v":1,[^{}]-"n":(%d+),"b":"[^"]*"}}()'

-- n of a sealed payload starting at `at` of s, or nil
local function sealed_n(s, at)
  local n = string.match(s, '^' .. HEAD, at)
  if not n then n = string.match(s, '^{"rating":[^,{}"]+,"memstore:sealed":{"v":1,[^{}]-"n":(%d+),"b":"', at) end
  return tonumber(n)
end

local kind = ARGV[1]
local total = 0

if kind == 'e' then
  -- header "<version>|...|<op id>[|<pin>|<actor JSON>]\n" (~120 B plus the actor's
  -- name), then the payload
  local from = 0
  while true do
    local ids = redis.call('ZRANGE', KEYS[1], from, from + 999)
    for _, id in ipairs(ids) do
      local key = ARGV[2] .. id
      local head = redis.call('GETRANGE', key, 0, 511)
      if head ~= '' then -- '' once Redis expired it: expired entities do not count
        local at = string.find(head, '\n', 1, true)
        if not at then
          -- a longer header (a long actor name): read the value whole (header.lua too reads again)
          head = redis.call('GET', key)
          at = string.find(head, '\n', 1, true)
        end
        local n = sealed_n(head, at + 1)
        if not n then n = redis.call('STRLEN', key) - at end
        total = total + n
      end
    end
    if #ids < 1000 then break end
    from = from + 1000
  end
elseif kind == 'c' then
  local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
  for _, id in ipairs(ids) do
    local key = ARGV[2] .. id
    local from = 0
    while true do
      local items = redis.call('LRANGE', key, from, from + 999)
      for _, item in ipairs(items) do
        -- "<seq>\n<created_at>\n<JSON>"
        local at = string.find(item, '\n', string.find(item, '\n', 1, true) + 1, true) + 1
        total = total + (sealed_n(item, at) or (string.len(item) - at + 1))
      end
      if #items < 1000 then break end
      from = from + 1000
    end
  end
elseif kind == 't' then
  -- "<tool>\n<bytes of input + output>\n" then the record: {"id":..,"tool_name":..,
  -- "input":<JSON>,"output":<JSON>,"duration_ms":..,...} (names hold no quote or brace)
  local values = redis.call('HVALS', KEYS[1])
  for _, value in ipairs(values) do
    local first = string.find(value, '\n', 1, true)
    local second = string.find(value, '\n', first + 1, true)
    local size = tonumber(string.sub(value, first + 1, second - 1))
    local at = string.match(value, '^{"id":"[^"]*","tool_name":"[^"]*","input":()', second + 1)
    if at then
      local from, n, to = string.match(value, '^' .. WHOLE, at)
      if from then size = size - (to - from) + tonumber(n) end
      -- the output ends where the fixed fields after it begin
      local stop = string.find(value, ',"duration_ms":[^,{}"]*,"success":[a-z]*,"timestamp":[^,{}"]*,"conversation_id":[^,{}]*}$', at)
      if stop then
        from, n, to = string.match(string.sub(value, 1, stop - 1), ',"output":' .. WHOLE .. '$', at)
        if from then size = size - (to - from) + tonumber(n) end
      end
    end
    total = total + size
  end
else
  -- {"id":..,"agent_name":..,"feedback_type":..,"data":<JSON>,"timestamp":<number>}
  local values = redis.call('HVALS', KEYS[1])
  for _, value in ipairs(values) do
    local at = string.match(value, '^{"id":"[^"]*","agent_name":"[^"]*","feedback_type":"[^"]*","data":()')
    local stop = at and string.find(value, ',"timestamp":[^,{}"]*}$', at)
    if stop then
      total = total + (sealed_n(value, at) or (stop - at))
    else
      total = total + string.len(value)
    end
  end
end
return total
