-- Entity record: ONE string value, ``<version>|<created>|<updated>|<expires|"">|<op>\n``
-- (``...|<op>|1\n`` when the entity is pinned: records written before pins have no sixth
-- field and are unpinned; ``...|<op>|<pin "1"|"">|<actor JSON>\n`` when the write named
-- its actor, who the version history says wrote it; records written before history have
-- no seventh field) then the payload JSON (compact JSON never holds a raw newline, and
-- the actor is a JSON string, so it holds none either). One string instead of a hash
-- saves the hash's per-field objects and dict (a 1 KB payload is over the listpack limit,
-- so the hash was a real hashtable). Scripts read only the header (GETRANGE 0 255: the
-- header is ~120 bytes plus the actor's name: version digits, three float reprs, a 24-hex
-- op id; a longer header, from a long name, is read again whole).
local function header(key)
  local h = redis.call('GETRANGE', key, 0, 255)
  if h == '' then return false end
  local nl = string.find(h, '\n', 1, true)
  if not nl then
    h = redis.call('GETRANGE', key, 0, 65535)
    nl = string.find(h, '\n', 1, true)
  end
  local v, c, u, x, o, p, a =
    string.match(h, '^(%d+)|([^|]*)|([^|]*)|([^|]*)|([^|\n]*)|?([^|\n]*)|?([^\n]*)\n')
  -- {version, created, updated, expires, op, header length (through the newline), pin,
  --  actor JSON|""}
  return {v, c, u, x, o, nl, p, a}
end

-- The header of a stored entity written with ``actor`` (JSON|"") and ``pin`` ("1"|""):
-- the shortest form that says both (records without them stay as they were).
local function head(version, created, updated, expires, op, pin, actor)
  local h = version .. '|' .. created .. '|' .. updated .. '|' .. expires .. '|' .. op
  if actor ~= '' then return h .. '|' .. pin .. '|' .. actor end
  if pin == '1' then return h .. '|1' end
  return h
end
