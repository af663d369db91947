-- wrk script: POST the JSON body in $BENCH_BODY_FILE to the target path with the bearer token
-- in $BENCH_TOKEN, and print one machine-readable summary line (BENCH_JSON {...}) that
-- bench/wrk.py parses. wrk counts every answer of 400 or more (a 401 too) as a status error.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
assert(token and token ~= "", "BENCH_TOKEN: the bearer token for /v1 is missing")
wrk.headers["Authorization"] = "Bearer " .. token
local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "r"))
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
