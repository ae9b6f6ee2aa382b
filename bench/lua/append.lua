-- append one message to one of n conversations: base=.../conversations/ n=<count> body=<JSON>
function on_init()
  base = P.base
  n = tonumber(P.n)
  body = P.body
end

function request()
  return wrk.format("POST", base .. "a" .. math.random(0, n - 1) .. "/messages",
    { ["Content-Type"] = "application/json" }, body)
end
