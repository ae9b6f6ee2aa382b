-- record one tool use (server-assigned id): url=.../tool-usage body=<JSON>
function on_init()
  url = P.url
  body = P.body
end

function request()
  return wrk.format("POST", url, { ["Content-Type"] = "application/json" }, body)
end
