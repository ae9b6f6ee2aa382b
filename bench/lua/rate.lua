-- Appended for fixed-rate runs: each connection waits `delay_ms` (randomly rounded so the
-- mean is exact) between a response and its next request, so the offered rate is about
-- connections / (delay + latency). wrk's latency excludes this wait.
function delay()
  local d = tonumber(P.delay_ms)
  local whole = math.floor(d)
  if math.random() < d - whole then whole = whole + 1 end
  return whole
end
