-- wrk script: POST a message with a unique messageId per request.
-- Env: BODY_FILE (a message JSON with "messageId": "__ID__"), KEY, TOKEN,
-- BATCH (messages per request, default 1).
local counter = 0
local thread_id = 0
local template, batch

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
  template = f:read("*a")
  f:close()
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
    local id = string.format("bench_%d_%d_%d", tid, counter, os.time())
    parts[i] = template:gsub("__ID__", id)
  end
  local body = parts[1]
  if batch > 1 then body = "[" .. table.concat(parts, ",") .. "]" end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 202 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end
