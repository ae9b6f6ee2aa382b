-- entity GET on one of n pre-seeded ids: base=.../entities/<type>/ n=<count>
function on_init()
  base = P.base
  n = tonumber(P.n)
end

function request()
  return wrk.format("GET", base .. "e" .. math.random(0, n - 1))
end
