"""Lua scripts: each one touches keys of a single hash slot and runs atomically.

Conventions: times travel as Python ``repr(float)`` strings (exact round trip), ``""``
stands for "none". Write scripts take an operation id (``op``) and remember the last one
on the object, so a retry of a write whose reply was lost (connection reset, failover)
returns the first outcome instead of applying the write twice. Scripts never compare
strings in Lua (Redis sets the collation locale; ordering is left to sorted sets and
Python, which both use byte order).

Byte accounting (``stored_bytes``): every write script also keeps a per-shard counter of
payload bytes (``eb``/``cb``/``tb``/``fb`` keys, same hash tag as the data) in the same
atomic step, so the counters are exact whatever runs concurrently. What counts is what the
embedded backend counts: the JSON of an entity's data, of each message, of a tool use's
input plus output, of a feedback's data. Entities with a TTL keep their size in a per-shard
hash (``es``) because Redis may drop the entity key before the expiry index is pruned; the
prune subtracts it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _script(name: str, source: str) -> Script:
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())  # noqa: S324 - Redis script id


# Entity record: ONE string value, ``<version>|<created>|<updated>|<expires|"">|<op>\n`` then
# the payload JSON (compact JSON never holds a raw newline). One string instead of a hash
# saves the hash's per-field objects and dict (a 1 KB payload is over the listpack limit,
# so the hash was a real hashtable). Scripts read only the header (GETRANGE 0 255: the
# header is at most ~120 bytes: version digits, three float reprs, a 24-hex op id).
_HEADER = """
local function header(key)
  local h = redis.call('GETRANGE', key, 0, 255)
  if h == '' then return false end
  local v, c, u, x, o = string.match(h, '^(%d+)|([^|]*)|([^|]*)|([^|]*)|([^\\n]*)\\n')
  return {v, c, u, x, o, string.len(v) + string.len(c) + string.len(u) + string.len(x)
    + string.len(o) + 5}
end
"""

# Bytes the shard counter holds for entity ARGV[1] (cur = header(KEYS[1]) or false).
# TTL'd entities: their entry in the sizes hash (gone once pruned); others: the payload.
_ACCOUNTED = """
local function accounted(cur, sizes_key)
  local s = redis.call('HGET', sizes_key, ARGV[1])
  if s then return tonumber(s) end
  if cur and cur[4] == '' then
    return redis.call('STRLEN', KEYS[1]) - cur[6]
  end
  return 0
end
"""

# Cross-replica cache invalidation in the same atomic step as the write: ``PUBLISH`` on
# standalone, ``SPUBLISH`` on a cluster on the invalidation channel of the entity's own
# slot (see keys.py), so the script stays single-slot. ``how`` "" or absent: no message.
_ANNOUNCE = """
local function announce(how, channel, message)
  if how and how ~= '' then redis.call(how, channel, message) end
end
"""

# KEYS: entity, index, expiry, sizes, bytes.
# ARGV: id, data, now, expires_at|"", expected|"", op, pexpireat|"",
#       PUBLISH|SPUBLISH|"", channel, message
# -> {"ok", version, created_at, updated_at, expires_at} | {"conflict", current|""}
# A retry of an applied op returns the first outcome and publishes nothing again (the
# first run published in the same atomic step).
SAVE_ENTITY = _script(
    "save_entity",
    _HEADER
    + _ACCOUNTED
    + _ANNOUNCE
    + """
local cur = header(KEYS[1])
if cur and cur[5] == ARGV[6] then
  return {'ok', cur[1], cur[2], cur[3], cur[4]}
end
local now = tonumber(ARGV[3])
local current = false
if cur and (cur[4] == '' or tonumber(cur[4]) > now) then
  current = tonumber(cur[1])
end
if ARGV[5] ~= '' then
  local expected = tonumber(ARGV[5])
  if (expected == 0 and current) or (expected > 0 and current ~= expected) then
    if current then return {'conflict', tostring(current)} end
    return {'conflict', ''}
  end
end
local version = (current or 0) + 1
local created = ARGV[3]
if current then created = cur[2] end
local old = accounted(cur, KEYS[4])
local size = string.len(ARGV[2])
local value = version .. '|' .. created .. '|' .. ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[6]
  .. '\\n' .. ARGV[2]
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], value, 'PXAT', ARGV[7])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], size)
else
  redis.call('SET', KEYS[1], value)
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if size ~= old then redis.call('INCRBY', KEYS[5], size - old) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
announce(ARGV[8], ARGV[9], ARGV[10])
return {'ok', tostring(version), created, ARGV[3], ARGV[4]}
""",
)

# KEYS: entity, index, expiry, sizes, bytes, tombstone.
# ARGV: id, now, expected|"", op, PUBLISH|SPUBLISH|"", channel, message
# -> {"ok", 0|1} | {"conflict", cur|""}. The tombstone remembers the op id for a minute so
# a retry of a delete whose reply was lost reports the same outcome.
DELETE_ENTITY = _script(
    "delete_entity",
    _HEADER
    + _ACCOUNTED
    + _ANNOUNCE
    + """
if redis.call('GET', KEYS[6]) == ARGV[4] then return {'ok', '1'} end
local cur = header(KEYS[1])
local current = false
if cur and (cur[4] == '' or tonumber(cur[4]) > tonumber(ARGV[2])) then
  current = tonumber(cur[1])
end
if ARGV[3] ~= '' then
  local expected = tonumber(ARGV[3])
  if (expected == 0 and current) or (expected > 0 and current ~= expected) then
    if current then return {'conflict', tostring(current)} end
    return {'conflict', ''}
  end
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local old = accounted(cur, KEYS[4])
redis.call('HDEL', KEYS[4], ARGV[1])
if old ~= 0 then redis.call('DECRBY', KEYS[5], old) end
if not cur then return {'ok', '0'} end
redis.call('DEL', KEYS[1])
announce(ARGV[5], ARGV[6], ARGV[7])
if current then
  redis.call('SET', KEYS[6], ARGV[4], 'PX', 60000)
  return {'ok', '1'}
end
return {'ok', '0'}
""",
)

# Drop up to ``limit`` expired members from the shard's indexes and their bytes from its
# counter (KEYS: index, expiry, sizes, bytes). Listing and counting prune at most 256 per
# call, so one call stays short; their correctness never depends on the pruning (expired
# members are skipped/subtracted using the expiry index). ``ENTITY_BYTES`` prunes all.
_PRUNE = """
local function prune(now, limit)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
  if #expired == 0 then return 0 end
  local sizes = redis.call('HMGET', KEYS[3], unpack(expired))
  local freed = 0
  for _, s in ipairs(sizes) do
    if s then freed = freed + tonumber(s) end
  end
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('ZREM', KEYS[2], unpack(expired))
  redis.call('HDEL', KEYS[3], unpack(expired))
  if freed ~= 0 then redis.call('DECRBY', KEYS[4], freed) end
  return #expired
end
"""

# KEYS: index, expiry, sizes, bytes. ARGV: now, lex lower bound ("-" or "(id"), count
# -> live ids in order
LIST_ENTITY_IDS = _script(
    "list_entity_ids",
    _PRUNE
    + """
prune(ARGV[1], 256)
local now = tonumber(ARGV[1])
local want = tonumber(ARGV[3])
local lo = ARGV[2]
local out = {}
while #out < want do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], lo, '+', 'LIMIT', 0, want - #out)
  if #batch == 0 then break end
  for _, m in ipairs(batch) do
    local s = redis.call('ZSCORE', KEYS[2], m)
    if (not s) or tonumber(s) > now then out[#out + 1] = m end
  end
  lo = '(' .. batch[#batch]
end
return out
""",
)

# KEYS: index, expiry, sizes, bytes. ARGV: now -> number of live entities in the shard
COUNT_ENTITIES = _script(
    "count_entities",
    _PRUNE
    + """
prune(ARGV[1], 256)
return redis.call('ZCARD', KEYS[1]) - redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[1])
""",
)

# KEYS: index, expiry, sizes, bytes. ARGV: now -> payload bytes of the shard's live entities
ENTITY_BYTES = _script(
    "entity_bytes",
    _PRUNE
    + """
while prune(ARGV[1], 1000) > 0 do end
return tonumber(redis.call('GET', KEYS[4]) or '0')
""",
)

_PUSH = """
local function push(key, first, ts, from)
  local items = {}
  local seq = first
  for i = from, #ARGV do
    items[#items + 1] = tostring(seq) .. '\\n' .. ts .. '\\n' .. ARGV[i]
    seq = seq + 1
    if #items == 500 then
      redis.call('RPUSH', key, unpack(items))
      items = {}
    end
  end
  if #items > 0 then redis.call('RPUSH', key, unpack(items)) end
end
"""

# Sum of the payload sizes ARGV[4..] (the messages' JSON).
_SIZE = """
local function payload_bytes()
  local b = 0
  for i = 4, #ARGV do b = b + string.len(ARGV[i]) end
  return b
end
"""

# KEYS: meta, messages, index, counter, bytes. ARGV: conversation id, now, op, message...
# -> first seq. The meta hash keeps the conversation's payload bytes in field 'b'.
APPEND_MESSAGES = _script(
    "append_messages",
    _PUSH
    + _SIZE
    + """
local last = redis.call('HMGET', KEYS[1], 'o', 'r')
if last[1] and last[1] == ARGV[3] then return tonumber(last[2]) end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'c', ARGV[2])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
local first = redis.call('LLEN', KEYS[2]) + 1
local n = #ARGV - 3
if n > 0 then
  push(KEYS[2], first, ARGV[2], 4)
  redis.call('INCRBY', KEYS[4], n)
  local b = payload_bytes()
  if b > 0 then
    redis.call('HINCRBY', KEYS[1], 'b', b)
    redis.call('INCRBY', KEYS[5], b)
  end
end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'o', ARGV[3], 'r', first)
return first
""",
)

# KEYS: messages. ARGV: before_seq, limit|"" -> the last ``limit`` items with seq < before_seq.
# List index i always holds seq i + 1 (append-only; replace rewrites from 1).
LOAD_MESSAGES_BEFORE = _script(
    "load_messages_before",
    """
local hi = math.min(redis.call('LLEN', KEYS[1]), tonumber(ARGV[1]) - 1) - 1
if hi < 0 then return {} end
local lo = 0
if ARGV[2] ~= '' then lo = math.max(0, hi - tonumber(ARGV[2]) + 1) end
return redis.call('LRANGE', KEYS[1], lo, hi)
""",
)

# KEYS: meta, messages, index, counter, bytes. ARGV: conversation id, now, op, message... -> 1
REPLACE_CONVERSATION = _script(
    "replace_conversation",
    _PUSH
    + _SIZE
    + """
local last = redis.call('HMGET', KEYS[1], 'o', 'b')
if last[1] and last[1] == ARGV[3] then return 1 end
local old_bytes = tonumber(last[2] or '0')
local new_bytes = payload_bytes()
local old = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'c', ARGV[2])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
local n = #ARGV - 3
if n > 0 then push(KEYS[2], 1, ARGV[2], 4) end
if n - old ~= 0 then redis.call('INCRBY', KEYS[4], n - old) end
if new_bytes ~= old_bytes then redis.call('INCRBY', KEYS[5], new_bytes - old_bytes) end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'o', ARGV[3], 'r', 1, 'b', new_bytes)
return 1
""",
)

# KEYS: meta, messages, index, counter, bytes. ARGV: conversation id -> 1 if it existed
DELETE_CONVERSATION = _script(
    "delete_conversation",
    """
local existed = redis.call('EXISTS', KEYS[1])
local b = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
if b ~= 0 then redis.call('DECRBY', KEYS[5], b) end
local n = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if n > 0 then redis.call('DECRBY', KEYS[4], n) end
return existed
""",
)

# Drop tool-usage records with timestamp < cutoff (at most ``limit``). Per-tool index keys
# are derived from the record (value = tool name, newline, accounted bytes, newline, JSON;
# records written before byte accounting lack the bytes line and count 0) and share the
# slot. KEYS[5] is the shard's byte counter.
_TRIM_TOOLS = """
local function trim(cutoff, limit, tool_prefix)
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  for _, id in ipairs(old) do
    local v = redis.call('HGET', KEYS[1], id)
    if v then
      local tool, size = string.match(v, '^([^\\n]*)\\n(%d*)')
      redis.call('ZREM', tool_prefix .. tool, id)
      size = tonumber(size) or 0
      if size ~= 0 then redis.call('DECRBY', KEYS[5], size) end
      if redis.call('HINCRBY', KEYS[4], tool, -1) <= 0 then redis.call('HDEL', KEYS[4], tool) end
      redis.call('HDEL', KEYS[1], id)
    end
    redis.call('ZREM', KEYS[2], id)
  end
  return #old
end
"""

# KEYS: records, time index, per-tool index, counts, bytes.
# ARGV: id, timestamp, tool name, value, cutoff|"", per-tool key prefix, accounted bytes
# -> 1 new / 0 duplicate
RECORD_TOOL_USAGE = _script(
    "record_tool_usage",
    _TRIM_TOOLS
    + """
if ARGV[5] ~= '' then trim(ARGV[5], 100, ARGV[6]) end
if ARGV[5] ~= '' and tonumber(ARGV[2]) < tonumber(ARGV[5]) then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[4]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
if ARGV[7] ~= '0' then redis.call('INCRBY', KEYS[5], ARGV[7]) end
return 1
""",
)

# KEYS: records, time index, (unused), counts, bytes. ARGV: cutoff|"", per-tool key prefix
# -> flat [tool, count, ...] after dropping everything older than the cutoff
TOOL_COUNTS = _script(
    "tool_counts",
    _TRIM_TOOLS
    + """
if ARGV[1] ~= '' then
  while trim(ARGV[1], 1000, ARGV[2]) > 0 do end
end
return redis.call('HGETALL', KEYS[4])
""",
)

# KEYS: as TOOL_COUNTS. ARGV: cutoff|"", per-tool key prefix -> payload bytes of the shard
TOOL_BYTES = _script(
    "tool_bytes",
    _TRIM_TOOLS
    + """
if ARGV[1] ~= '' then
  while trim(ARGV[1], 1000, ARGV[2]) > 0 do end
end
return tonumber(redis.call('GET', KEYS[5]) or '0')
""",
)

# KEYS: records, overall, per agent, per type, per (agent, type), bytes.
# ARGV: id, timestamp, value, accounted bytes -> 1 new / 0 duplicate
SAVE_FEEDBACK = _script(
    "save_feedback",
    """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end
for i = 2, 5 do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1]) end
if ARGV[4] ~= '0' then redis.call('INCRBY', KEYS[6], ARGV[4]) end
return 1
""",
)

ALL = (
    SAVE_ENTITY,
    DELETE_ENTITY,
    LIST_ENTITY_IDS,
    COUNT_ENTITIES,
    ENTITY_BYTES,
    APPEND_MESSAGES,
    REPLACE_CONVERSATION,
    DELETE_CONVERSATION,
    RECORD_TOOL_USAGE,
    TOOL_COUNTS,
    TOOL_BYTES,
    SAVE_FEEDBACK,
    LOAD_MESSAGES_BEFORE,
)
