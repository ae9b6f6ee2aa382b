-- load the last `limit` messages of one of n pre-seeded conversations
function on_init()
  base = P.base
  n = tonumber(P.n)
  limit = P.limit or "50"
end

function request()
  return wrk.format("GET", base .. "c" .. math.random(0, n - 1) .. "/messages?limit=" .. limit)
end
