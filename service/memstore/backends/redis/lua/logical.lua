-- Logical payload bytes (``logical_bytes``): each payload's own compact JSON size, which
-- for a sealed payload (compressed and/or encrypted, core/payload_codec.py) is its
-- envelope's "n" and otherwise the stored JSON's length (what the byte counters count):
-- the rule of backends/common.py ``logical_size``. The write scripts keep a per-shard
-- counter of it next to each stored-bytes counter (``lcounter``), in the same atomic step.
-- An envelope is written by orjson in the order v, c, k, n, b, so "n" is in its first
-- bytes; a payload whose top level is the reserved key is always an envelope (the codec
-- wraps a plain one that has it), and entity and tool-use envelopes hold nothing else
-- (a feedback's may start with its clear "rating"). A tool use or feedback record of
-- another layout (none is written today) counts as stored (a feedback: its whole record),
-- never an error.
local SEALED_HEAD = '{"memstore:sealed":{"v":1,[^{}]-"n":(%d+),"b":"'
local SEALED_WHOLE = '(){"memstore:sealed":{"v":1,[^{}]-"n":(%d+),"b":"[^"]*"}}()'

-- The logical bytes counter beside a shard's stored bytes counter (same hash tag, so the
-- same slot), and the flag saying it has been backfilled (``backfill``).
local function lcounter(bytes_key) return bytes_key .. ':l' end

-- n of a sealed payload starting at `at` of s, or nil
local function sealed_n(s, at)
  local n = string.match(s, '^' .. SEALED_HEAD, at)
  if not n then n = string.match(s, '^{"rating":[^,{}"]+,"memstore:sealed":{"v":1,[^{}]-"n":(%d+),"b":"', at) end
  return tonumber(n)
end

-- Logical size of a payload given whole
local function payload_logical(s)
  return sealed_n(s, 1) or string.len(s)
end

-- Logical size of the stored entity ``key`` (cur = header(key), present)
local function entity_logical(key, cur)
  local head = redis.call('GETRANGE', key, cur[6], cur[6] + 511)
  return sealed_n(head, 1) or (redis.call('STRLEN', key) - cur[6])
end

-- Logical size of a message list item "<seq>\n<created_at>\n<JSON>"
local function message_logical(item)
  local at = string.find(item, '\n', string.find(item, '\n', 1, true) + 1, true) + 1
  return sealed_n(item, at) or (string.len(item) - at + 1)
end

-- Logical size of a tool use record: "<tool>\n<bytes of input + output>\n" then
-- {"id":..,"tool_name":..,"input":<JSON>,"output":<JSON>,"duration_ms":..,...} (names
-- hold no quote or brace); a record without the bytes line counts 0, as stored.
local function tool_logical(value)
  local first = string.find(value, '\n', 1, true)
  local second = first and string.find(value, '\n', first + 1, true)
  if not second then return 0 end
  local size = tonumber(string.sub(value, first + 1, second - 1)) or 0
  local at = string.match(value, '^{"id":"[^"]*","tool_name":"[^"]*","input":()', second + 1)
  if at then
    local from, n, to = string.match(value, '^' .. SEALED_WHOLE, at)
    if from then size = size - (to - from) + tonumber(n) end
    -- the output ends where the fixed fields after it begin
    local stop = string.find(value, ',"duration_ms":[^,{}"]*,"success":[a-z]*,"timestamp":[^,{}"]*,"conversation_id":[^,{}]*}$', at)
    if stop then
      from, n, to = string.match(string.sub(value, 1, stop - 1), ',"output":' .. SEALED_WHOLE .. '$', at)
      if from then size = size - (to - from) + tonumber(n) end
    end
  end
  return size
end

-- Logical size of a feedback record
-- {"id":..,"agent_name":..,"feedback_type":..,"data":<JSON>,"timestamp":<number>}
local function feedback_logical(value)
  local at = string.match(value, '^{"id":"[^"]*","agent_name":"[^"]*","feedback_type":"[^"]*","data":()')
  local stop = at and string.find(value, ',"timestamp":[^,{}"]*}$', at)
  if stop then return sealed_n(value, at) or (stop - at) end
  return string.len(value)
end

-- Adjust the logical counter beside ``bytes_key`` by ``delta``
local function ladjust(bytes_key, delta)
  if delta ~= 0 then redis.call('INCRBY', lcounter(bytes_key), delta) end
end

-- Data written before the logical counters existed has no share in them. The first read of
-- a shard's logical bytes therefore counts the shard once, whole (``count``: a scan of its
-- records, O(records), once), sets the counter to it and flags the shard done
-- (``<counter>f``), in one atomic step: the deltas that writes added before it are
-- replaced by the exact count, and from then on the writes' deltas keep it exact.
local function backfilled(bytes_key, count)
  local counter = lcounter(bytes_key)
  if redis.call('EXISTS', counter .. 'f') == 0 then
    redis.call('SET', counter, count())
    redis.call('SET', counter .. 'f', '1')
  end
  return tonumber(redis.call('GET', counter) or '0')
end
