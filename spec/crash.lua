-- The crash test: a job with checkpoints every 100 ms is killed with
-- SIGKILL at random moments, ten times, and resumed each time with
-- `eddy run --resume`. Its committed output must be the output of a run
-- that never crashed: nothing lost, nothing twice.
--
--   lua5.4 spec/crash.lua [kills [seed [backend]]]     (make check runs it)
--
-- backend "rocksdb" keeps the state in RocksDB with incremental
-- checkpoints (a seed of "-" picks one). A kill may then land while SST
-- files are being uploaded to shared/: what it leaves there is removed at
-- the resume, and the resumed job's checkpoints build on the files of the
-- one it resumed from.
--
-- EDDY_EXE names the eddy to test (default bin/eddy).

local exe = os.getenv("EDDY_EXE") or "bin/eddy"
local kills = tonumber(arg[1]) or 10
local seed = tonumber(arg[2]) or os.time()
local backend = arg[3] or "heap"
math.randomseed(seed)

local function quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return ""
  end
  local s = f:read("a")
  f:close()
  return s
end

local dir = io.popen("mktemp -d"):read("l")
local job = dir .. "/job.lua"
do
  local f = assert(io.open(job, "w"))
  -- keyed running counts: order-independent per key, so the set of lines
  -- is the same however the crashes cut the run
  f:write([[
local out_dir, chk_dir, checkpointing, backend, rocksdb_dir = ...
local job = eddy.job {
  name = "crash-test", parallelism = 2,
  checkpoint = checkpointing == "yes" and { interval = "100ms", dir = chk_dir, retained = 2 } or nil,
  state_backend = backend == "rocksdb"
    and { type = "rocksdb", incremental = true, dir = rocksdb_dir } or nil,
}
job:from_generator {
  count = 30000, rate = checkpointing == "yes" and 5000 or nil,
  fn = function(i) return { k = i % 97, v = i } end,
}
  :key_by("k")
  :process("sum", {
    process = function(ctx, r, out)
      local s = ctx:value_state("s")
      local n = (s:value() or 0) + 1
      s:update(n)
      out:collect { k = r.k, n = n }
    end,
  })
  :to_file(out_dir)
job:run()
]])
  f:close()
end

local function lines_of(out_dir)
  local p = io.popen("cat " .. quote(out_dir) .. "/part-* 2>/dev/null | sort")
  local text = p:read("a")
  p:close()
  return text
end

local function fail(msg)
  io.stderr:write("crash test (seed " .. seed .. "): " .. msg .. "\n")
  io.stderr:write("kept for a look: " .. dir .. "\n")
  os.exit(1)
end

-- the clean run
local tail = (" %s %s"):format(quote(backend), quote(dir .. "/rocksdb"))
if not sh(("%s run %s %s %s no%s > %s/clean.log 2>&1"):format(quote(exe), quote(job),
    quote(dir .. "/clean"), quote(dir .. "/chk-clean"), tail, dir)) then
  fail("the clean run failed: " .. read(dir .. "/clean.log"))
end
local want = lines_of(dir .. "/clean")

local out, chk = dir .. "/out", dir .. "/chk"
local killed = 0
for round = 1, kills do
  local resume = round == 1 and "" or "--resume"
  -- started in the background; its pid kept to kill it
  sh(("%s run %s %s %s %s yes%s > %s/run-%d.log 2>&1 & echo $! > %s/pid"):format(quote(exe),
    resume, quote(job), quote(out), quote(chk), tail, dir, round, dir))
  local wait = 0.15 + math.random() * 0.45
  sh(("sleep %.2f"):format(wait))
  local pid = read(dir .. "/pid"):match("%d+")
  if sh("kill -9 " .. pid .. " 2>/dev/null") then
    killed = killed + 1
    -- wait until it is gone: dead, or a zombie its new parent has not
    -- reaped yet (which can take a while)
    local function alive()
      local state = read("/proc/" .. pid .. "/stat"):match("%) (%a)")
      return state ~= nil and state ~= "Z" and state ~= "X"
    end
    while alive() do
      sh("sleep 0.02")
    end
  else
    break -- it finished first: nothing left to crash
  end
  io.write(("  killed after %.2f s (%d)\n"):format(wait, round))
end

if not sh(("%s run --resume %s %s %s yes%s > %s/final.log 2>&1"):format(quote(exe), quote(job),
    quote(out), quote(chk), tail, dir)) then
  fail("the final run failed: " .. read(dir .. "/final.log"))
end

-- the finished job's checkpoints are discarded, shared files included (a
-- job killed before its first checkpoint completed is not resumed: the
-- next run starts over as a new job, and the old one's folder stays)
local resumed = read(dir .. "/final.log"):match("resuming crash%-test from (.-)/chk%-%d+\n")
if resumed then
  local p = io.popen("find " .. quote(resumed) .. " 2>/dev/null")
  local left = p:read("a")
  p:close()
  if left ~= "" then
    fail("left in the job's checkpoint folder after it finished:\n" .. left)
  end
end

local got = lines_of(out)
if got ~= want then
  local function count(text)
    local n = {}
    for line in text:gmatch("[^\n]+") do
      n[line] = (n[line] or 0) + 1
    end
    return n
  end
  local w, g = count(want), count(got)
  local missing, extra = 0, 0
  for line, n in pairs(w) do
    missing = missing + math.max(0, n - (g[line] or 0))
  end
  for line, n in pairs(g) do
    extra = extra + math.max(0, n - (w[line] or 0))
  end
  fail(("after %d kills: %d lines missing, %d too many"):format(killed, missing, extra))
end
if killed < kills then
  fail(("the job finished after %d kills of %d: make it longer"):format(killed, kills))
end
local _, nlines = want:gsub("\n", "")
print(("crash test (%s): %d kills, resumed each time, %d lines exactly once (seed %d)"):format(
  backend, killed, nlines, seed))
sh("rm -rf " .. quote(dir))
