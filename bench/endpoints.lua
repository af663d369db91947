-- wrk script of bench/endpoints.py: one route per run, every answer's status counted.
--   BENCH_METHOD     GET or POST
--   BENCH_BODY_FILE  a POST's JSON body; none read for a GET, or with BENCH_BODY=none
--   BENCH_TOKEN      the bearer token; unset or empty: no Authorization header (the probes)
--   BENCH_SESSION    "1": domestic sessions. A thread sends POST /v1/domestic/prepare-issue,
--                    keeps the stoken and issuerNonce of each answer, and spends one with its
--                    next request: POST /v1/domestic/issue, the body BENCH_BODY_FILE with
--                    @STOKEN@ and @COMMITMENT@ replaced. A session's two steps go out on
--                    whichever of the thread's connections is free, as an app's would on a
--                    pooled client; sessions belong to the token's subject, not a connection.
-- Prints one line BENCH_JSON {...} (bench/wrk.py): wrk's summary, the count of answers by
-- status, and in session mode the 200s of each step.
local method = os.getenv("BENCH_METHOD") or "GET"
local session = os.getenv("BENCH_SESSION") == "1"
local token = os.getenv("BENCH_TOKEN") or ""

local function read(name)
  local file = assert(io.open(name, "r"))
  local text = file:read("*a")
  file:close()
  return text
end

local function headers(with_body)
  local h = {}
  if token ~= "" then h["Authorization"] = "Bearer " .. token end
  if with_body then h["Content-Type"] = "application/json" end
  return h
end

local has_body = method == "POST" and not session and os.getenv("BENCH_BODY") ~= "none"
wrk.method = method
wrk.headers = headers(has_body)
if has_body then
  wrk.body = read(assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is missing"))
end

-- Per thread (each wrk thread runs its own copy of this script).
statuses = {}
prepared = 0
issued = 0
local pending = {}

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local VALUE = {}
for i = 1, 64 do VALUE[ALPHABET:byte(i)] = i - 1 end

local function digit(n)
  return ALPHABET:sub(n + 1, n + 1)
end

local function encode64(text)
  local out = {}
  for i = 1, #text, 3 do
    local a, b, c = text:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = digit(math.floor(n / 262144) % 64) .. digit(math.floor(n / 4096) % 64)
      .. (b and digit(math.floor(n / 64) % 64) or "=") .. (c and digit(n % 64) or "=")
  end
  return table.concat(out)
end

local function decode64(text)
  text = text:gsub("[^%w%+/]", "")
  local out = {}
  for i = 1, #text, 4 do
    local chunk = { text:byte(i, i + 3) }
    local n = 0
    for k = 1, 4 do n = n * 64 + (VALUE[chunk[k]] or 0) end
    local bytes = string.char(math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
    out[#out + 1] = bytes:sub(1, #chunk - 1)
  end
  return table.concat(out)
end

if session then
  local template = read(assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is missing"))
  local prepare, issue_headers

  request = function()
    if prepare == nil then -- wrk's init has set its Host header by the first request
      local host = headers(false)
      host["Host"] = wrk.headers["Host"]
      prepare = wrk.format("POST", "/v1/domestic/prepare-issue", host)
      issue_headers = headers(true)
      issue_headers["Host"] = wrk.headers["Host"]
    end
    local next_one = table.remove(pending)
    if next_one == nil then
      return prepare
    end
    local commitment = encode64('{"issuerNonce":"' .. next_one.nonce .. '","proof":"bench"}')
    local body = template:gsub("@(%u+)@", function(name)
      if name == "STOKEN" then return next_one.stoken end
      if name == "COMMITMENT" then return commitment end
    end)
    return wrk.format("POST", "/v1/domestic/issue", issue_headers, body)
  end
end

response = function(status, _, body)
  statuses[status] = (statuses[status] or 0) + 1
  if not session or status ~= 200 then return end
  local stoken = body:match('"stoken":"([^"]+)"')
  if stoken == nil then
    issued = issued + 1
    return
  end
  prepared = prepared + 1
  local message = decode64(body:match('"prepareIssueMessage":"([^"]+)"') or "")
  local nonce = message:match('"issuerNonce"%s*:%s*"([^"]+)"')
  if nonce then pending[#pending + 1] = { stoken = stoken, nonce = nonce } end
end

local threads = {}

setup = function(thread)
  threads[#threads + 1] = thread
end

done = function(summary, latency, _)
  local counts, totals = {}, { prepared = 0, issued = 0 }
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do counts[status] = (counts[status] or 0) + n end
    totals.prepared = totals.prepared + thread:get("prepared")
    totals.issued = totals.issued + thread:get("issued")
  end
  local shown = {}
  for status, n in pairs(counts) do shown[#shown + 1] = string.format('"%d":%d', status, n) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"statuses":{%s},"prepared":%d,"issued":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, table.concat(shown, ","), totals.prepared, totals.issued))
end
