-- Retention's rules (memstore.core.retention), judged at one instant: why an entity goes
-- ('max_age' first, 'idle'), or nil. cur = header(key); accessed = the shard's hash of
-- recorded reads; saved/idle = the bounds (nil: the rule is off). Pinned and expired
-- entities never qualify.
local function entity_reason(cur, accessed, id, now, saved, idle)
  if not cur or cur[7] == '1' then return nil end
  if cur[4] ~= '' and tonumber(cur[4]) <= now then return nil end
  local updated = tonumber(cur[3])
  if saved and updated < saved then return 'max_age' end
  if idle then
    local last = updated
    local a = redis.call('HGET', accessed, id)
    if a and tonumber(a) > last then last = tonumber(a) end
    if last < idle then return 'idle' end
  end
  return nil
end

local function bound(value)
  if value == '' then return nil end
  return tonumber(value)
end

local function seq_of(item)
  return tonumber(string.match(item, '^%d+'))
end

-- A conversation's fate: {reason, through_seq, messages} or nil. meta, messages: its keys.
local function conversation_reason(meta, messages, idle, keep)
  local t = redis.call('HMGET', meta, 'u', 'c')
  local updated = tonumber(t[1] or t[2] or '0')
  local n = redis.call('LLEN', messages)
  local last = 0
  if n > 0 then last = seq_of(redis.call('LINDEX', messages, -1)) end
  if idle and updated < idle then return {'idle', last, n} end
  -- the last removed seq is read, not computed: an imported conversation may have gaps
  if keep and n > keep then
    return {'max_messages', seq_of(redis.call('LINDEX', messages, n - keep - 1)), n - keep}
  end
  return nil
end
