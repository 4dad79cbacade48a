-- wrk script for bench/scale.sh: 1 write in 10 (POST /notes), 9 reads of a random note
-- (GET /notes/{id}) that present the thread's last Pgbridge-Commit-Lsn (read-your-writes).
-- Counts who served the reads (Pgbridge-Served-By) and prints it at the end. Authenticates
-- with the bearer token in $PGBRIDGE_TOKEN (bench/scale.sh logs in once).
local threads = {}
function setup(thread) table.insert(threads, thread) end

function init(args)
  ids = tonumber(args[1]) or tonumber(os.getenv("NOTES") or "") or 100
  counter = 0
  token = nil
  standby = 0
  primary = 0
  auth = "Bearer " .. (os.getenv("PGBRIDGE_TOKEN") or "")
end

function request()
  counter = counter + 1
  if counter % 10 == 0 then
    return wrk.format("POST", "/notes", { ["Content-Type"] = "application/json", ["Authorization"] = auth },
      '{"title":"bench","body":"mixed load"}')
  end
  local headers = { ["Authorization"] = auth }
  if token then headers["Pgbridge-Min-Lsn"] = token end
  return wrk.format("GET", "/notes/" .. math.random(1, ids), headers)
end

function response(status, headers, body)
  local lsn = headers["pgbridge-commit-lsn"] or headers["Pgbridge-Commit-Lsn"]
  if lsn then token = lsn end
  local by = headers["pgbridge-served-by"] or headers["Pgbridge-Served-By"]
  if by == "standby" then standby = standby + 1 elseif by == "primary" then primary = primary + 1 end
end

function done(summary, latency, requests)
  local s, p = 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("standby")
    p = p + t:get("primary")
  end
  io.write(string.format("SERVED standby=%d primary=%d\n", s, p))
end
