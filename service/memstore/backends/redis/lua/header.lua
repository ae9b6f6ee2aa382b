-- Entity record: ONE string value, ``<version>|<created>|<updated>|<expires|"">|<op>\n``
-- (``...|<op>|1\n`` when the entity is pinned: records written before pins have no sixth
-- field and are unpinned) then the payload JSON (compact JSON never holds a raw newline). One string instead of a hash
-- saves the hash's per-field objects and dict (a 1 KB payload is over the listpack limit,
-- so the hash was a real hashtable). Scripts read only the header (GETRANGE 0 255: the
-- header is at most ~120 bytes: version digits, three float reprs, a 24-hex op id).
local function header(key)
  local h = redis.call('GETRANGE', key, 0, 255)
  if h == '' then return false end
  local v, c, u, x, o, p = string.match(h, '^(%d+)|([^|]*)|([^|]*)|([^|]*)|([^|\n]*)|?([^\n]*)\n')
  -- {version, created, updated, expires, op, header length (through the newline), pin}
  return {v, c, u, x, o, string.find(h, '\n', 1, true), p}
end
