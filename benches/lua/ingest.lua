-- wrk script: POST a message with a unique messageId per request.
-- Env: BODY_FILE (a message JSON with "messageId": "__ID__"), KEY, TOKEN,
-- BATCH (messages per request, default 1). No response() hook: wrk counts
-- non-2xx answers itself, and a Lua call per response costs the shared CPU.
local counter = 0
local thread_id = 0
local before, after, batch

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

local start = os.time()

function init(args)
  local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
  local template = f:read("*a")
  f:close()
  -- Split once around the placeholder: a request is then two concatenations,
  -- not a pattern substitution (the load generator shares the server's cores).
  local s, e = template:find("__ID__", 1, true)
  before, after = template:sub(1, s - 1), template:sub(e + 1)
  batch = tonumber(os.getenv("BATCH") or "1")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = os.getenv("KEY")
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
end

function request()
  local parts = {}
  for i = 1, batch do
    counter = counter + 1
    parts[i] = before .. "bench_" .. tid .. "_" .. counter .. "_" .. start .. after
  end
  local body = parts[1]
  if batch > 1 then body = "[" .. table.concat(parts, ",") .. "]" end
  return wrk.format(nil, nil, nil, body)
end
