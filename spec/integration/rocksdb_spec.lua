-- Jobs on the RocksDB backend, end to end in bin/eddy: the same output as
-- on heap, chosen by eddy's name or Flink's, working folders that are named
-- after the job and removed; savepoints that carry state from heap to
-- RocksDB and back at changing parallelism with identical state; and the
-- errors a user can cause, each one line that says what and where.

local eddy = require "eddy"
local run = require "run"

-- Every kind of keyed state, event-time timers and a tumbling window
-- (namespaced state), over records {k, ts}. Prints what each record and
-- timer saw; a run stopped with a savepoint and restored goes on exactly
-- where it was.
local JOB = [[
local input, savepoint = ...
local job = eddy.job { name = "kinds" }
local src = job:from_file(input, { format = "jsonl", timestamp = "ts",
                                   watermarks = eddy.watermarks.monotonous() }):uid("src")
src:key_by("k")
  :process("kinds", {
    process = function(ctx, r, out)
      local n = ctx:value_state("n")
      n:update((n:value() or 0) + 1)
      local recent = ctx:list_state("recent")
      recent:add(r.ts)
      local l = recent:get()
      if #l > 3 then
        table.remove(l, 1)
        recent:update(l)
      end
      local seen = ctx:map_state("seen")
      seen:put(r.ts % 700, { at = r.ts })
      if r.ts % 300 == 0 then
        seen:remove((r.ts - 100) % 700)
      end
      local total = ctx:reducing_state { name = "total", reduce = function(a, b) return a + b end }
      total:add(r.ts // 100)
      local avg = ctx:aggregating_state {
        name = "avg",
        create = function() return { c = 0, s = 0 } end,
        add = function(acc, v) return { c = acc.c + 1, s = acc.s + v } end,
        result = function(acc) return acc.s // acc.c end,
        merge = function(a, b) return { c = a.c + b.c, s = a.s + b.s } end,
      }
      avg:add(r.ts)
      ctx.timers:register_event_time(r.ts + 250)
      local keys = seen:keys()
      out(("record %s %d n=%d recent=%s seen=%d/%s total=%d avg=%d"):format(r.k, r.ts, n:value(),
        table.concat(recent:get(), ","), #keys, tostring(keys[1]), total:get(), avg:get()))
    end,
    on_timer = function(ctx, ts, out)
      out(("timer %s %d n=%d"):format(ctx:key(), ts, ctx:value_state("n"):value()))
    end,
  })
  :print()
src:key_by("k")
  :window(eddy.windows.tumbling(1000))
  :aggregate("per-second", {
    create = function() return 0 end,
    add = function(acc) return acc + 1 end,
    result = function(acc) return acc end,
    merge = function(a, b) return a + b end,
  })
  :map(function(c) return "window " .. tostring(c) end)
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
    t[#t + 1] = ('{"k":"k%d","ts":%d}'):format(i % 13, i * 100)
  end
  return table.concat(t, "\n") .. "\n"
end

local function append(path, text)
  local f = assert(io.open(path, "ab"))
  f:write(text)
  f:close()
end

-- stdout without print's "N> " prefixes, sorted
local function records(out)
  local t = {}
  for line in out:gmatch("[^\n]+") do
    t[#t + 1] = (line:gsub("^%d+> ", ""))
  end
  table.sort(t)
  return t
end

local function entries_of(dir)
  local p = assert(io.popen("ls -A " .. run.quote(dir) .. " 2>/dev/null"))
  local names = {}
  for name in p:lines() do
    names[#names + 1] = name
  end
  p:close()
  return names
end

-- Runs JOB: backend "heap" or "rocksdb" (by Flink's names, as -D), at
-- parallelism p, from restore, over input; returns stdout and the savepoint
-- taken at the end (savepoint: a folder) or nil.
local function job_runner(dir)
  local script = run.write(dir .. "/job.lua", JOB)
  return function(backend, p, restore, input, savepoint)
    local out, err, code = run.sh(("%s run -p %d -D state.backend=%s %s %s %s %s %s"):format(
      run.quote(run.exe), p, backend == "heap" and "hashmap" or "rocksdb",
      "-D state.backend.rocksdb.localdir=" .. run.quote(dir .. "/rocksdb"),
      restore and ("-s " .. run.quote(restore)) or "", run.quote(script), run.quote(input),
      savepoint and run.quote(savepoint) or "none"))
    assert.equal(0, code, err)
    return out, err:match("savepoint: (%S+)")
  end
end

describe("the rocksdb backend", function()
  after_each(run.cleanup)

  it("runs the order-stats example with heap's output, its folders named per subtask and removed", function()
    local dir = run.tmpdir()
    local example = run.root .. "/examples/order_stats.lua"
    local heap_out, err, code = run.eddy("run", "-p", "3", example)
    assert.equal(0, code, err)
    local out
    out, err, code = run.eddy("run", "-p", "3", "-D", "state.backend=rocksdb",
      "-D", "state.backend.rocksdb.localdir=" .. dir, "-D", "state.backend.rocksdb.predefined-options=FLASH_SSD_OPTIMIZED",
      example)
    assert.equal(0, code, err)
    assert.equal(heap_out, out)
    assert.are.same({}, entries_of(dir))
  end)

  it("keeps its working folders while the job runs: job_<id>_op_<uid>_<subtask>", function()
    local dir = run.tmpdir()
    local script = run.write(dir .. "/job.lua", [[
local dir = ...
local job = eddy.job { name = "folders", parallelism = 2,
                       state_backend = { type = "rocksdb", dir = dir .. "/state",
                                         options = { write_buffer_size = "1mb", compression = "lz4" } } }
job:from_collection { 1, 2, 3, 4 }
  :key_by(function(x) return x % 2 end)
  :process("counts", {
    process = function(ctx, x, out)
      local n = ctx:value_state("n")
      n:update((n:value() or 0) + x)
      local p = io.popen("ls " .. dir .. "/state")
      out(p:read("a"):gsub("%x%x%x%x%x%x%x%x+", "ID"):gsub("\n", " ") .. n:value())
      p:close()
    end,
  })
  :print()
job:run()
]])
    local out, err, code = run.eddy("run", script, dir)
    assert.equal(0, code, err)
    assert.truthy(out:find("job_ID_op_counts_0 job_ID_op_counts_1 ", 1, true), out)
    assert.are.same({}, entries_of(dir .. "/state"))
  end)

  it("goes from heap to rocksdb and back through savepoints at 2, 3, 1 and 2 subtasks", function()
    local dir = run.tmpdir()
    local eddy_run = job_runner(dir)
    local whole = run.write(dir .. "/whole.jsonl", lines_between(1, 480))
    local expected = records((eddy_run("heap", 2, nil, whole)))
    assert.truthy(#expected > 960)

    local input = run.write(dir .. "/growing.jsonl", lines_between(1, 160))
    local out1, sp1 = eddy_run("heap", 2, nil, input, dir .. "/sp")
    append(input, lines_between(161, 320))
    local out2, sp2 = eddy_run("rocksdb", 3, sp1, input, dir .. "/sp")
    -- the same step on heap: both savepoints hold the same state
    local _, sp2_heap = eddy_run("heap", 3, sp1, input, dir .. "/sp")
    append(input, lines_between(321, 400))
    local out3, sp3 = eddy_run("rocksdb", 1, sp2, input, dir .. "/sp")
    append(input, lines_between(401, 480))
    local out4 = eddy_run("heap", 2, sp3, input)
    assert.are.same(expected, records(out1 .. out2 .. out3 .. out4))

    local from_rocksdb, from_heap = eddy.savepoint.load(sp2), eddy.savepoint.load(sp2_heap)
    for _, uid in ipairs { "kinds", "per-second" } do
      local state = from_rocksdb:state(uid)
      assert.are.same(from_heap:state(uid), state)
      assert.are.same(from_heap:timers(uid), from_rocksdb:timers(uid))
      assert.truthy(#from_rocksdb:timers(uid) > 0)
    end
    assert.equal(13, #from_rocksdb:state("kinds", "seen"))
    from_rocksdb:close()
    from_heap:close()
    assert.are.same({}, entries_of(dir .. "/rocksdb"))
  end)

  it("recovers from a failure exactly once from its checkpoints", function()
    local dir = run.tmpdir()
    local script = run.write(dir .. "/job.lua", [[
local dir = ...
local failed = false
local job = eddy.job {
  name = "recover", parallelism = 2,
  state_backend = { type = "rocksdb", dir = dir .. "/state" },
  checkpoint = { interval = "10ms", dir = dir .. "/chk" },
  restart = { strategy = "fixed_delay", attempts = 3, delay = "1ms" },
}
job:from_generator { count = 6000, rate = 30000, fn = function(i) return { k = i % 29, i = i } end }
  :map(function(r)
    if r.i == 4000 and not failed then
      failed = true
      error("injected failure")
    end
    return r
  end)
  :key_by("k")
  :process("count", {
    process = function(ctx, r, out)
      local n = ctx:map_state("n")
      local c = (n:get("c") or 0) + 1
      n:put("c", c)
      ctx:list_state("last"):add(r.i)
      out:collect { k = r.k, n = c }
    end,
  })
  :to_file(dir .. "/out")
job:run()
]])
    local _, err, code = run.eddy("run", script, dir)
    assert.equal(0, code, err)
    assert.truthy(err:find("restarting from " .. dir .. "/chk/", 1, true), err)
    local p = assert(io.popen("cat " .. run.quote(dir .. "/out") .. "/part-* | sort | uniq -c | sort -n | tail -1"))
    local most = p:read("a")
    p:close()
    assert.matches("^%s*1 ", most) -- no line twice
    p = assert(io.popen("cat " .. run.quote(dir .. "/out") .. "/part-* | wc -l"))
    assert.equal(6000, tonumber(p:read("a")))
    p:close()
    assert.are.same({}, entries_of(dir .. "/state"))
  end)

  describe("errors", function()
    it("name a working folder that cannot be made", function()
      local dir = run.tmpdir()
      run.write(dir .. "/file", "")
      local _, err, code = run.eddy("run", "-D", "state.backend=rocksdb",
        "-D", "state.backend.rocksdb.localdir=" .. dir .. "/file/state", run.root .. "/examples/order_stats.lua")
      assert.equal(1, code)
      assert.matches("^eddy: rocksdb backend: cannot create the folder " .. dir:gsub("%p", "%%%0")
        .. "/file/state: Not a directory %(in [^\n]*%)\n$", err)
    end)

    it("name a working folder that another process holds: the same job resumed twice", function()
      local dir = run.tmpdir()
      local script = run.write(dir .. "/job.lua", [[
local dir, second = ...
local job = eddy.job {
  name = "twice", state_backend = { type = "rocksdb", dir = dir .. "/state" },
  -- the second run only resumes: its own checkpoints would race the first's
  -- the first keeps them all, or the one the second reads could go away
  -- under it
  checkpoint = second == nil and { interval = "20ms", dir = dir .. "/chk", retained = 1000,
                                   externalized = "retain_on_cancellation" } or nil,
  restart = { strategy = "none" },
}
job:from_generator { rate = 200, fn = function(i) return { k = i % 3 } end }:uid("numbers")
  :key_by("k")
  :process("count", { process = function(ctx) ctx:value_state("n"):update(1) end })
  :sink(function() end)
job:run()
]])
      -- the first run goes on until it is killed
      local first = assert(io.popen(("exec %s run %s %s > /dev/null 2>&1 & echo $!"):format(
        run.quote(run.exe), run.quote(script), run.quote(dir))))
      local pid = first:read("l")
      first:close()
      local chk
      for _ = 1, 400 do -- until a checkpoint is complete, which --resume needs
        local p = io.popen("ls " .. run.quote(dir) .. "/chk/*/chk-*/_metadata 2>/dev/null")
        chk = p:read("l")
        p:close()
        if chk then
          break
        end
        os.execute("sleep 0.05")
      end
      local _, err, code = run.sh(("timeout 60 %s run --resume %s %s %s second"):format(
        run.quote(run.exe), run.quote(dir .. "/chk"), run.quote(script), run.quote(dir)))
      os.execute("kill " .. pid)
      assert.truthy(chk, "the first run took no checkpoint")
      assert.equal(1, code, err)
      assert.truthy(err:find("rocksdb backend: the working folder " .. dir .. "/state/job_", 1, true), err)
      assert.matches("\neddy: rocksdb backend: the working folder [^\n]*_op_count_0 is locked by another "
        .. "backend %(is the same job running twice%?%) %(in process count %-> sink%)\n$", err)
    end)

    it("say when the disk is full, naming the folder and what RocksDB saw", function()
      local dir = run.tmpdir()
      local script = run.write(dir .. "/job.lua", [[
local dir = ...
local job = eddy.job {
  name = "full", control = false,
  state_backend = { type = "rocksdb", dir = dir .. "/state",
                    options = { write_buffer_size = "256kb", compression = "none" } },
}
local chars = {}
job:from_generator { count = 100000, fn = function(i) return { k = i } end }
  :key_by("k")
  :process("fill", {
    process = function(ctx, r)
      for j = 1, 500 do chars[j] = string.char(math.random(0, 255)) end
      ctx:value_state("v"):update(table.concat(chars))
    end,
  })
  :sink(function() end)
job:run()
]])
      -- a file-size limit makes RocksDB's writes fail as on a full disk
      local _, err, code = run.sh(("trap '' XFSZ; ulimit -f 1024; exec %s run %s %s"):format(
        run.quote(run.exe), run.quote(script), run.quote(dir)))
      assert.equal(1, code, err)
      assert.matches("^eddy: [^\n]*job%.lua:%d+: value state 'v': rocksdb backend %(" .. dir:gsub("%p", "%%%0")
        .. "/state/job_%x+_op_fill_0%): a write failed: [^\n]*File too large[^\n]*\n$", err)
      assert.are.same({}, entries_of(dir .. "/state"))
    end)
  end)
end)
