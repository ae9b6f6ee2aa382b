-- Prelude of every scenario script (bench/wrk.py prepends it).
-- Arguments arrive as key=value after `--` and land in P; on_init() then reads them.
-- done() prints one JSON line that bench/wrk.py parses.
P = {}

function init(args)
  for _, a in ipairs(args) do
    local k, v = a:match("^([^=]+)=(.*)$")
    if k then P[k] = v end
  end
  math.randomseed(os.time() + tonumber(P.seed or "0"))
  if on_init then on_init() end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
