-- Job control as a user drives it: `eddy run -d` starts a job in the
-- background, and `eddy list`, `info`, `savepoint`, `stop`, `cancel` reach
-- it through its control socket; `eddy run -s` restores what they saved.
-- Every command runs under `timeout`, with a private XDG_RUNTIME_DIR, so a
-- hang fails the spec instead of stalling it.
--
-- The job: a generator at a fixed rate, event time t = 10 ms per record,
-- tumbling windows of 1 s (100 records) counted per user at parallelism 2.
-- Every record is counted once: in a window printed ("N> count") or in a
-- window still in state, which is what the checks add up.

local run = require "run"
local core = require "eddy.core"

local JOB = [[
local eddy = require "eddy"
local env = function(k) local v = os.getenv(k); return v ~= "" and v or nil end
local fail_at = tonumber(env("FAIL_AT") or "")
local job = eddy.job {
  name = env("NAME") or "windows", parallelism = 2, savepoint_dir = env("SPDIR"),
  checkpoint = env("CKDIR") and { interval = "100ms", dir = env("CKDIR"),
                                  externalized = "retain_on_cancellation" } or nil,
  restart = env("RESTART") and { strategy = "fixed_delay", attempts = 1, delay = env("RESTART") }
            or { strategy = "none" },
}
job:from_generator {
  count = tonumber(env("COUNT") or ""), rate = tonumber(env("RATE") or "400"),
  fn = function(i)
    if i == fail_at then error("boom at record " .. i) end
    return { user = "u" .. (i % 3), t = i * 10 }
  end,
}:uid("gen")
  :assign_timestamps { timestamp = "t", watermarks = eddy.watermarks.monotonous() }
  :key_by("user")
  :window(eddy.windows.tumbling(1000))
  :aggregate("counts", {
    create = function() return 0 end,
    add = function(n) return n + 1 end,
    result = function(n) return n end,
    merge = function(a, b) return a + b end,
  })
  :print()
local result = job:run()
print("ended with savepoint " .. tostring(result.savepoint))
]]

local dir, xdg, script

local function sh(env, command)
  return run.sh(("XDG_RUNTIME_DIR=%s EDDY_CONTROL_TIMEOUT=10 %s timeout 20 %s"):format(
    run.quote(xdg), env or "", command))
end

-- eddy(args...) or eddy({env = "K=V ..."}, args...) -> out, err, code
local function eddy(...)
  local args, env = { ... }, nil
  if type(args[1]) == "table" then
    env = table.remove(args, 1).env
  end
  local parts = { run.quote(run.exe) }
  for _, a in ipairs(args) do
    parts[#parts + 1] = run.quote(a)
  end
  return sh(env, table.concat(parts, " "))
end

-- starts the job in the background; returns its id
local function start(env)
  local out, err, code = eddy({ env = env }, "run", "-d", script)
  assert.equal("", err)
  assert.equal(0, code)
  local id = out:match("^(%x+)\n$")
  assert.truthy(id, out)
  return id
end

local function control_dir()
  return xdg .. "/eddy"
end

local function status(id)
  local text = run.read(control_dir() .. "/" .. id .. ".json")
  return text:match('"state":"(%u+)"'), text
end

local function log_of(id)
  return run.read(control_dir() .. "/" .. id .. ".log")
end

-- waits (at most 10 s) until pred() is true
local function wait_for(what, pred)
  for _ = 1, 400 do
    if pred() then
      return
    end
    core.sleep_ms(25)
  end
  error("timed out waiting for " .. what)
end

local function ended(id)
  wait_for("job " .. id .. " to end", function()
    return status(id) ~= "RUNNING"
  end)
  return status(id)
end

-- the sum of the window counts a log printed
local function printed(log)
  local sum, n = 0, 0
  for count in log:gmatch("%d> (%d+)\n") do
    sum, n = sum + tonumber(count), n + 1
  end
  return sum, n
end

-- what a savepoint holds: the generator's next record, and the records
-- counted in windows not fired yet
local function savepoint_contents(path)
  local out, err, code = eddy("inspect", path, "--json")
  assert.equal("", err)
  assert.equal(0, code)
  local position = tonumber(out:match('"operator":"gen".-"position":(%d+)'))
  local pending, windows = 0, 0
  for count in out:gmatch('"state":"window%-contents"[^\n]-"value":(%d+)') do
    pending, windows = pending + tonumber(count), windows + 1
  end
  return position, pending, windows
end

local function is_savepoint(path)
  local meta = run.read(path .. "/_metadata")
  return meta:find('"kind":%s*"savepoint"') ~= nil
end

describe("job control (eddy run -d, list, info, savepoint, stop, cancel)", function()
  setup(function()
    dir = run.tmpdir()
    xdg = dir .. "/xdg"
    os.execute("mkdir -m 700 " .. run.quote(xdg) .. " " .. run.quote(dir .. "/sp"))
    script = run.write(dir .. "/windows.lua", JOB)
  end)

  teardown(function()
    -- nothing keeps running: a job this spec left running is killed
    local out = run.sh("ls " .. run.quote(control_dir()) .. " 2>/dev/null")
    for id in out:gmatch("(%x+)%.json\n") do
      local state, text = status(id)
      if state == "RUNNING" then
        os.execute("kill -9 " .. text:match('"pid":(%d+)') .. " 2>/dev/null")
      end
    end
    run.cleanup()
  end)

  it("lists a running job, shows its graph, and keeps its socket private", function()
    local id = start()
    local out, err, code = eddy("list")
    assert.equal("", err)
    assert.equal(0, code)
    local lines = run.lines(out)
    assert.same({ "JOB ID", "NAME", "STATE", "STARTED" },
                { lines[1]:match("^(JOB ID)%s+(NAME)%s+(STATE)%s+(STARTED)$") })
    assert.truthy(out:find("\n" .. id .. "  windows  RUNNING  %d%d%d%d%-%d%d%-%d%d "), out)

    -- by id, by a prefix of it, by name: the graph, parallelism, records
    wait_for("records", function()
      local info = eddy("info", id)
      local n = info:match("\n3  window aggregate counts %-> print  counts%s+2%s+(%d+)")
      return n and tonumber(n) > 0
    end)
    for _, name in ipairs { id, id:sub(1, 6), "windows" } do
      out, err, code = eddy("info", name)
      assert.equal("", err)
      assert.equal(0, code)
      assert.truthy(out:find('^job ' .. id .. ' "windows": RUNNING\n'), out)
      assert.truthy(out:find("#  VERTEX%s+UID%s+PARALLELISM%s+RECORDS IN%s+RECORDS OUT%s+WATERMARK"))
      assert.truthy(out:find("\n1  from_generator%s+gen%s+1%s+0%s+%d+%s+%-\n"), out)
      assert.truthy(out:find("\n2  assign_timestamps%s+op%-2%s+2%s+%d+"), out)
      assert.truthy(out:find("\n3  window aggregate counts %-> print  counts%s+2%s+%d+%s+0%s+%d+\n"),
                    out)
      assert.truthy(out:find("inputs: 2 <- 1 rebalance; 3 <- 2 keyed\n", 1, true), out)
      assert.truthy(out:find("checkpoints: off (savepoints only); 0 completed, 0 failed, "
                             .. "0 in progress", 1, true), out)
    end

    -- the folder is 0700, the socket and status file 0600
    local modes = run.sh("stat -c '%a %n' " .. run.quote(control_dir()) .. " "
                         .. run.quote(control_dir() .. "/" .. id) .. ".*")
    assert.truthy(modes:find("^700 " .. control_dir() .. "\n"), modes)
    assert.truthy(modes:find("\n600 " .. control_dir() .. "/" .. id .. ".sock\n", 1, true), modes)
    assert.truthy(modes:find("\n600 " .. control_dir() .. "/" .. id .. ".json\n", 1, true), modes)

    -- another user cannot reach it (as root: try as nobody)
    if run.sh("id -u") == "0\n" and os.execute("command -v setpriv >/dev/null") then
      out, err, code = sh(nil, ("setpriv --reuid=65534 --regid=65534 --clear-groups %s info %s")
                                  :format(run.quote(run.exe), id))
      assert.equal(1, code)
      assert.equal("", out)
      assert.truthy(err:find("^eddy: [^\n]*" .. control_dir():gsub("%p", "%%%0")
                             .. ": Permission denied\n$"), err)
      assert.equal("RUNNING", status(id))
    end

    -- cancel: at once, CANCELED, nothing printed, the socket gone
    out, err, code = eddy("cancel", id)
    assert.equal("", err)
    assert.equal("", out)
    assert.equal(0, code)
    assert.equal("CANCELED", status(id))
    assert.is_nil(io.open(control_dir() .. "/" .. id .. ".sock"))
    assert.truthy(log_of(id):find("eddy: cancelled\n", 1, true))
    -- gone from the running jobs
    out = eddy("list")
    assert.equal("no running jobs\n", out)
    out, err, code = eddy("stop", id)
    assert.equal(1, code)
    assert.truthy(err:find("^eddy: stop: job " .. id .. " %(windows%) is not running: it ended "
                           .. "CANCELED at [^\n]+\n$"), err)
  end)

  it("stops with a savepoint that keeps pending windows, which eddy run -s restores", function()
    local id = start()
    wait_for("a window to fire", function() return printed(log_of(id)) > 0 end)
    local out, err, code = eddy("stop", id, "--savepoint-path", dir .. "/sp")
    assert.equal("", err)
    assert.equal(0, code)
    local sp = out:match("^(/%S+/savepoint%-" .. id:sub(1, 6) .. "%-%x+)\n$")
    assert.truthy(sp, out)
    assert.truthy(is_savepoint(sp))
    -- synchronous: the job has ended when stop returns
    assert.equal("STOPPED", status(id))
    assert.truthy(log_of(id):find("ended with savepoint " .. sp .. "\n", 1, true))
    -- every record emitted is in a window that fired or in one kept in state
    local position, pending, windows = savepoint_contents(sp)
    assert.truthy(windows > 0)
    assert.equal(position - 1, printed(log_of(id)) + pending)

    -- restored, bounded this time: the kept windows fire with the rest
    local count = position + 150
    out, err, code = eddy({ env = ("COUNT=%d RATE=100000"):format(count) }, "run", "-s", sp, script)
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal(count - (position - 1) + pending, printed(out))
    assert.equal(count, printed(out) + printed(log_of(id)))
  end)

  it("stops with --drain: the maximum watermark fires every window first", function()
    local id = start()
    wait_for("a window to fire", function() return printed(log_of(id)) > 0 end)
    local out, err, code = eddy("stop", "--drain", "-p", dir .. "/sp", id:sub(1, 10))
    assert.equal("", err)
    assert.equal(0, code)
    local sp = out:match("^(%S+)\n$")
    assert.equal("STOPPED", status(id))
    local position, pending, windows = savepoint_contents(sp)
    assert.equal(0, pending)
    assert.equal(0, windows)
    assert.equal(position - 1, printed(log_of(id)))
  end)

  it("takes savepoints of a running job, into DIR or its savepoint_dir", function()
    local id = start("SPDIR=" .. run.quote(dir .. "/sp") .. " NAME=other")
    local out, err, code = eddy("savepoint", id, dir .. "/sp")
    assert.equal("", err)
    assert.equal(0, code)
    local first = out:match("^(%S+)\n$")
    assert.truthy(first and is_savepoint(first), out)
    -- a relative folder is the caller's, not the job's
    out, err, code = sh(nil, "sh -c " .. run.quote(("cd %s && %s savepoint other sp"):format(
      run.quote(dir), run.quote(run.exe))))
    assert.equal("", err)
    assert.equal(0, code)
    assert.truthy(out:find("^" .. dir:gsub("%p", "%%%0") .. "/sp/savepoint%-%x+%-%x+\n$"), out)
    -- no folder: the job's savepoint_dir
    out, err, code = eddy("savepoint", "other")
    assert.equal("", err)
    assert.equal(0, code)
    local third = out:match("^(%S+)\n$")
    assert.truthy(third:find(dir .. "/sp/", 1, true) == 1)
    assert.truthy(is_savepoint(third))
    -- info lists them
    out = eddy("info", "other")
    assert.truthy(out:find("0 failed", 1, true), out)
    assert.truthy(out:find("3 completed", 1, true), out)
    local _, n = out:gsub("\n%s+%d+  savepoint  completed  ", "")
    assert.equal(3, n)
    assert.truthy(out:find(third, 1, true))
    -- a savepoint restores into a new run of the job
    local position = savepoint_contents(first)
    out, err, code = eddy({ env = ("COUNT=%d RATE=100000"):format(position + 100) },
                          "run", "-s", first, script)
    assert.equal("", err)
    assert.equal(0, code)
    assert.truthy(out:find("\nended with savepoint nil\n$"), out)

    -- cancel -s: a savepoint, then the job ends CANCELED
    out, err, code = eddy("cancel", "other", "-s", dir .. "/sp")
    assert.equal("", err)
    assert.equal(0, code)
    assert.truthy(is_savepoint(out:match("^(%S+)\n$")))
    assert.equal("CANCELED", status(id))
    -- and a job without savepoint_dir needs a folder
    local plain = start()
    out, err, code = eddy("savepoint", plain)
    assert.equal("", out)
    assert.equal(1, code)
    assert.equal("eddy: savepoint: job " .. plain:sub(1, 8) .. ": no savepoint folder given, and the "
                 .. "job has no savepoint_dir (state.savepoints.dir) to default to\n", err)
    out, err, code = eddy("stop", plain)
    assert.equal(1, code)
    assert.truthy(err:find("no savepoint folder given", 1, true))
    -- a folder that cannot be one is refused before the job stops
    out, err, code = eddy("stop", plain, "--savepoint-path", script)
    assert.equal(1, code)
    assert.equal("eddy: stop: job " .. plain:sub(1, 8) .. ": cannot write a savepoint into "
                 .. script .. ": not a folder\n", err)
    assert.equal("RUNNING", status(plain))
    eddy("cancel", plain)
  end)

  it("disposes of savepoints only", function()
    local id = start("CKDIR=" .. run.quote(dir .. "/chk"))
    local chk_dir = dir .. "/chk/" .. id
    wait_for("a checkpoint", function()
      return run.sh("ls " .. run.quote(chk_dir) .. " 2>/dev/null"):find("chk%-%d+\n") ~= nil
    end)
    local out, err, code = eddy("savepoint", id, dir .. "/sp")
    assert.equal(0, code, err)
    local sp = out:match("^(%S+)\n$")
    eddy("cancel", id)
    -- the checkpoints are retained on cancellation; dispose refuses them
    local chk = chk_dir .. "/" .. run.sh("ls " .. run.quote(chk_dir)):match("(chk%-%d+)\n")
    out, err, code = eddy("savepoint", "-d", chk)
    assert.equal(1, code)
    assert.equal("", out)
    assert.equal("eddy: savepoint -d: " .. chk .. " is a checkpoint, not a savepoint: not disposed of\n",
                 err)
    assert.truthy(io.open(chk .. "/_metadata"))
    -- nor anything else
    out, err, code = eddy("savepoint", "-d", dir)
    assert.equal(1, code)
    assert.truthy(err:find("^eddy: savepoint %-d: [^\n]+\n$"), err)
    assert.truthy(io.open(script))
    -- a savepoint goes
    out, err, code = eddy("savepoint", "--dispose", sp)
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal("disposed of " .. sp .. "\n", out)
    assert.is_nil(io.open(sp .. "/_metadata"))
  end)

  it("lists ended jobs with -a: finished, failed, and lost ones", function()
    local finished = start("COUNT=50 RATE=100000")
    local failed = start("FAIL_AT=30")
    local lost = start()
    assert.equal("FINISHED", ended(finished))
    assert.equal("FAILED", ended(failed))
    assert.truthy(select(2, status(failed)):find("boom at record 30", 1, true))
    -- kill -9: the status still says RUNNING; list finds the process gone
    local pid = select(2, status(lost)):match('"pid":(%d+)')
    os.execute("kill -9 " .. pid)
    wait_for("the process to go", function() return not os.execute("kill -0 " .. pid .. " 2>/dev/null") end)
    local out, err, code = eddy("list")
    assert.equal(0, code)
    assert.equal("", err)
    assert.equal("no running jobs\n", out)
    assert.equal("LOST", status(lost))
    assert.is_nil(io.open(control_dir() .. "/" .. lost .. ".sock"))

    out, err, code = eddy("list", "-a")
    assert.equal(0, code)
    local states = {}
    for id, state in out:gmatch("\n(%x+)  %S+%s+(%u+)  ") do
      states[id] = state
    end
    assert.equal("FINISHED", states[finished])
    assert.equal("FAILED", states[failed])
    assert.equal("LOST", states[lost])
    -- and those of the tests before: stopped, canceled
    local seen = {}
    for _, s in pairs(states) do seen[s] = true end
    assert.truthy(seen.STOPPED and seen.CANCELED, out)

    -- info of an ended job: as it was at its end
    out, err, code = eddy("info", finished)
    assert.equal("", err)
    assert.equal(0, code)
    assert.truthy(out:find('^job ' .. finished .. ' "windows": FINISHED\n'), out)
    assert.truthy(out:find("\n1  from_generator%s+gen%s+1 %(1/1 finished%)%s+0%s+50%s"), out)
  end)

  it("answers while the job waits to restart, and can be cancelled then", function()
    local id = start("FAIL_AT=20 RESTART=20s")
    wait_for("the restart", function() return log_of(id):find("restarting", 1, true) end)
    local out, err, code = eddy("info", id)
    assert.equal("", err)
    assert.equal(0, code)
    assert.truthy(out:find('^job ' .. id .. ' "windows": RESTARTING\n'), out)
    assert.truthy(out:find("\n1  from_generator%s+gen%s+1%s+0%s+%d+"), out)
    out, err, code = eddy("savepoint", id, dir .. "/sp")
    assert.equal(1, code)
    assert.equal("eddy: savepoint: job " .. id:sub(1, 8) .. ": the job is RESTARTING: try again "
                 .. "once it runs\n", err)
    out, err, code = eddy("cancel", id)
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal("CANCELED", status(id))
  end)

  it("refuses bad usage with status 2 and a one-line message", function()
    for _, args in ipairs {
      { "list", "x" }, { "list", "--bogus" }, { "info" }, { "info", "a", "b" }, { "stop" },
      { "stop", "a", "--savepoint-path" }, { "cancel" }, { "cancel", "a", "-s" },
      { "savepoint" }, { "savepoint", "-d" }, { "savepoint", "a", "b", "c" },
      { "savepoint", "-d", "x", "y" },
    } do
      local out, err, code = eddy(table.unpack(args))
      assert.equal(2, code, table.concat(args, " "))
      assert.equal("", out)
      assert.truthy(err:find("^eddy: [^\n]+ %(see 'eddy %-%-help'%)\n$"), err)
    end
    -- a detached script that fails at once: its message, status 1
    local bad = run.write(dir .. "/bad.lua", "error('no good', 0)\n")
    local out, err, code = eddy("run", "-d", bad)
    assert.equal("", out)
    assert.equal(1, code)
    assert.equal("eddy: no good\n", err)
  end)
end)
