-- wrk script: unauthenticated GETs rotating over a protected route, /readyz
-- and /metrics, until TOTAL answers (default 100000, split over THREADS wrk
-- threads) have been read; then each thread stops sending (wrk itself runs
-- for its -d duration).
local paths = { "/api/v1/service/send/stats", "/readyz", "/metrics" }
local requests = {}
local next_path, answered, limit = 0, 0, 0

function init(args)
  local total = tonumber(os.getenv("TOTAL") or "100000")
  local threads = tonumber(os.getenv("THREADS") or "1")
  limit = math.ceil(total / threads)
  for i, path in ipairs(paths) do
    requests[i] = wrk.format("GET", path)
  end
end

function request()
  next_path = next_path % #requests + 1
  return requests[next_path]
end

function response(status, headers, body)
  answered = answered + 1
  if answered >= limit then
    wrk.thread:stop()
  end
end
