-- wrk script: POST a message with a unique messageId per request.
-- Env: BODY_FILE (a message JSON with "messageId": "__ID__"), KEY, TOKEN,
-- BATCH (messages per request, default 1), PREBUILT (requests each wrk thread
-- builds before the run, default 0).
-- The load generator shares the server's cores, so every microsecond it spends
-- is taken from the server: requests are built from a template split once
-- around the placeholder, PREBUILT of them before the clock starts (then on
-- the fly, still unique), and there is no response() hook (wrk counts non-2xx
-- answers itself).
local counter = 0
local thread_id = 0
local before, after, batch
local prebuilt, next_prebuilt = {}, 1

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

local start = os.time()

local function build()
  local parts = {}
  for i = 1, batch do
    counter = counter + 1
    parts[i] = before .. "bench_" .. tid .. "_" .. counter .. "_" .. start .. after
  end
  local body = parts[1]
  if batch > 1 then body = "[" .. table.concat(parts, ",") .. "]" end
  return wrk.format(nil, nil, nil, body)
end

function init(args)
  local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
  local template = f:read("*a")
  f:close()
  local s, e = template:find("__ID__", 1, true)
  before, after = template:sub(1, s - 1), template:sub(e + 1)
  batch = tonumber(os.getenv("BATCH") or "1")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = os.getenv("KEY")
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
  for i = 1, tonumber(os.getenv("PREBUILT") or "0") do
    prebuilt[i] = build()
  end
end

function request()
  -- Kept in the table after use: freeing them would make garbage for the
  -- collector to trace through the whole table during the run.
  local r = prebuilt[next_prebuilt]
  if r then
    next_prebuilt = next_prebuilt + 1
    return r
  end
  return build()
end
