-- entity PUT with a version check. Each request either creates a fresh id with
-- If-None-Match: * (fraction `create`) or replaces an id whose version it learnt from an
-- earlier response, with If-Match: "<version>". An id is never in flight twice, so a 412 is
-- a real error. base=.../entities/<type>/ tag=<unique per run> body=<JSON> create=0.2
local free = {}
local counter = 0

function on_init()
  base = P.base
  tag = P.tag
  body = P.body
  create = tonumber(P.create or "0.2")
end

function request()
  if #free == 0 or math.random() < create then
    counter = counter + 1
    return wrk.format("PUT", base .. tag .. "-" .. counter,
      { ["If-None-Match"] = "*", ["Content-Type"] = "application/json" }, body)
  end
  local item = table.remove(free)
  return wrk.format("PUT", base .. item[1],
    { ["If-Match"] = '"' .. item[2] .. '"', ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, resp)
  if status == 200 or status == 201 then
    local id = resp:match('"id":"([^"]+)"')
    local v = resp:match('"version":(%d+)')
    if id and v then free[#free + 1] = { id, v } end
  end
end
