-- Random jobs by ID, 1..BENCH_JOBS, with the bearer token from BENCH_TOKEN.
local jobs = tonumber(os.getenv("BENCH_JOBS"))
local headers = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") }

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  return wrk.format("GET", "/api/backups/monitoring/job/" .. math.random(1, jobs), headers)
end
