-- A wall of jobs polled the way the README's Polling section says: each request is one job's
-- cursor poll (after=<X-Log-Cursor>) with If-None-Match: <ETag>, the jobs taken in turn.
-- BENCH_WALL_FILE holds one "path<TAB>etag" line per job; BENCH_TOKEN the bearer token.
local polls = {}
for line in io.lines(os.getenv("BENCH_WALL_FILE")) do
  local path, etag = line:match("([^\t]+)\t(.+)")
  polls[#polls + 1] = { path = path, etag = etag }
end
local token = "Bearer " .. os.getenv("BENCH_TOKEN")
local turn = 0

function request()
  turn = turn % #polls + 1
  local poll = polls[turn]
  return wrk.format("GET", poll.path, { ["Authorization"] = token, ["If-None-Match"] = poll.etag })
end
