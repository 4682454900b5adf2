-- Random jobs by name (job-0000001 ...), 1..BENCH_JOBS, with the bearer token from BENCH_TOKEN.
local jobs = tonumber(os.getenv("BENCH_JOBS"))
local headers = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") }

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  local name = string.format("job-%07d", math.random(1, jobs))
  return wrk.format("GET", "/api/backups/monitoring/job/" .. name, headers)
end
