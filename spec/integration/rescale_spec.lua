-- Savepoints and rescaling: a job stopped with a savepoint at the end of
-- its input goes on from it at another parallelism, over a file that grew
-- meanwhile, and ends with the output of a run that was never stopped.

local run = require "run"

-- Per key: a count, and an event-time timer 250 ms after each record that
-- reports the count when it fires. Stopping with a savepoint keeps pending
-- timers in state (no maximum watermark), so they fire in a later run.
local JOB = [[
local input, savepoint = ...
local job = eddy.job { name = "rescaled" }
job:from_file(input, { format = "jsonl", timestamp = "ts", watermarks = eddy.watermarks.monotonous() })
  :key_by("k")
  :process("count", {
    process = function(ctx, r, out)
      local n = ctx:value_state("n")
      n:update((n:value() or 0) + 1)
      ctx.timers:register_event_time(r.ts + 250)
      out(("record %s %d"):format(r.k, n:value()))
    end,
    on_timer = function(ctx, ts, out)
      out(("timer %s %d %d"):format(ctx:key(), ts, ctx:value_state("n"):value()))
    end,
  })
  :print()
if savepoint ~= "none" then
  local result = job:run { savepoint = savepoint }
  io.stderr:write("savepoint: ", result.savepoint, "\n")
else
  job:run()
end
]]

local function lines_between(a, b)
  local t = {}
  for i = a, b do
    t[#t + 1] = ('{"k":"k%d","ts":%d}'):format(i % 17, i * 100)
  end
  return table.concat(t, "\n") .. "\n"
end

local function append(path, text)
  local f = assert(io.open(path, "ab"))
  f:write(text)
  f:close()
end

-- stdout without print's "N> " subtask prefixes, sorted
local function records(out)
  local t = {}
  for line in out:gmatch("[^\n]+") do
    t[#t + 1] = (line:gsub("^%d+> ", ""))
  end
  table.sort(t)
  return t
end

describe("savepoints and rescaling", function()
  after_each(run.cleanup)

  it("stop at the end of input with a savepoint, go on at 3, 1 and 2 subtasks, as if never stopped", function()
    local dir = run.tmpdir()
    local script = run.write(dir .. "/job.lua", JOB)
    local whole = run.write(dir .. "/whole.jsonl", lines_between(1, 600))
    local function eddy(p, restore, input, savepoint)
      local out, err, code = run.sh(("%s run -p %d %s %s %s %s"):format(run.quote(run.exe), p,
        restore and ("-s " .. run.quote(restore)) or "", run.quote(script), run.quote(input),
        savepoint and run.quote(savepoint) or "none"))
      assert.equal(0, code, err)
      return out, err:match("savepoint: (%S+)")
    end
    local expected = records((eddy(2, nil, whole)))
    assert.equal(600 + 600, #expected) -- every record, and every timer once

    local input = run.write(dir .. "/growing.jsonl", lines_between(1, 200))
    local out1, sp1 = eddy(2, nil, input, dir .. "/sp")
    assert.matches("/sp/savepoint%-%x%x%x%x%x%x%-%x+$", sp1)
    append(input, lines_between(201, 400))
    local out2, sp2 = eddy(3, sp1, input, dir .. "/sp")
    append(input, lines_between(401, 600))
    local out3, sp3 = eddy(1, sp2, input, dir .. "/sp")
    local out4 = eddy(2, sp3, input)
    local got = records(out1 .. out2 .. out3 .. out4)
    assert.are.same(expected, got)
  end)

  it("refuses a restore whose source file was replaced", function()
    local dir = run.tmpdir()
    local script = run.write(dir .. "/job.lua", JOB)
    local input = run.write(dir .. "/in.jsonl", lines_between(1, 50))
    local _, err, code = run.sh(("%s run %s %s %s"):format(run.quote(run.exe), run.quote(script),
      run.quote(input), run.quote(dir .. "/sp")))
    assert.equal(0, code, err)
    local sp = err:match("savepoint: (%S+)")
    run.write(input, lines_between(1000, 1060))
    local _, e2, c2 = run.sh(("%s run -s %s %s %s none"):format(run.quote(run.exe), run.quote(sp),
      run.quote(script), run.quote(input)))
    assert.equal(1, c2)
    assert.truthy(e2:find("the file changed before byte", 1, true), e2)
    run.write(input, lines_between(1, 10))
    _, e2, c2 = run.sh(("%s run -s %s %s %s none"):format(run.quote(run.exe), run.quote(sp),
      run.quote(script), run.quote(input)))
    assert.equal(1, c2)
    assert.truthy(e2:find("cannot resume at byte", 1, true), e2)
  end)

  it("warns at start about a source or sink whose state has no uid", function()
    local dir = run.tmpdir()
    local script = run.write(dir .. "/job.lua", [[
local job = eddy.job { name = "uids" }
local src = job:from_collection { 1, 2 }
if arg[1] == "named" then src:uid("numbers") end
local sink = src:to_file(arg[2])
if arg[1] == "named" then sink:uid("files") end
job:run { savepoint = arg[3] }
]])
    local _, err, code = run.eddy("run", script, "anonymous", dir .. "/out1", dir .. "/sp")
    assert.equal(0, code, err)
    assert.truthy(err:find('eddy: warning: from_collection has no uid; its state is kept under the '
      .. 'generated uid "source-1"', 1, true), err)
    assert.truthy(err:find("eddy: warning: to_file(" .. dir .. "/out1) has no uid", 1, true), err)
    _, err, code = run.eddy("run", script, "named", dir .. "/out2", dir .. "/sp")
    assert.equal(0, code, err)
    assert.equal("", err)
  end)
end)
