-- Random jobs 1..BENCH_JOBS, by ID or, with BENCH_BY=name, by name (job-0000001 ...),
-- with the bearer token from BENCH_TOKEN.
local jobs = tonumber(os.getenv("BENCH_JOBS"))
local by_name = os.getenv("BENCH_BY") == "name"
local headers = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") }

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  local n = math.random(1, jobs)
  local identifier = by_name and string.format("job-%07d", n) or tostring(n)
  return wrk.format("GET", "/api/backups/monitoring/job/" .. identifier, headers)
end
