-- wrk script: GET with an API key and a bearer token (env KEY, TOKEN).
function init(args)
  wrk.headers["X-API-Key"] = os.getenv("KEY")
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
end
