-- Jobs end to end through the public API: operators, partitioning,
-- parallelism, keyed operators, side outputs, sinks and errors.

local eddy = require "eddy"
local run = require "run"

local function collect_of(build, config)
  local job = eddy.job(config or {})
  local c = build(job)
  local result = job:run()
  return c:values(), result, job
end

describe("a job", function()
  after_each(run.cleanup)

  it("chains map, filter and flat_map", function()
    local values = collect_of(function(job)
      return job:from_collection { 1, 2, 3, 4, 5 }
        :map(function(x) return x * 10 end)
        :filter(function(x) return x ~= 30 end)
        :flat_map(function(x, out)
          out(x)
          out:collect(x + 1)
        end)
        :collect()
    end)
    assert.are.same({ 10, 11, 20, 21, 40, 41, 50, 51 }, values)
  end)

  it("keys by a field or a function and keeps state per key", function()
    local build = function(key)
      return function(job)
        return job:from_collection {
          { user = "a", n = 1 }, { user = "b", n = 2 }, { user = "a", n = 3 },
        }
          :key_by(key)
          :process("count", {
            process = function(ctx, r, out)
              local s = ctx:value_state("sum")
              s:update((s:value() or 0) + r.n)
              out { key = ctx:key(), sum = s:value() }
            end,
          })
          :collect()
      end
    end
    local want = { { key = "a", sum = 1 }, { key = "b", sum = 2 }, { key = "a", sum = 4 } }
    assert.are.same(want, (collect_of(build("user"))))
    assert.are.same(want, (collect_of(build(function(r) return r.user end))))
  end)

  it("routes every key to the subtask that owns its key group", function()
    local values = collect_of(function(job)
      local records = {}
      for i = 1, 200 do
        records[i] = { k = "key-" .. i }
      end
      return job:from_collection(records)
        :key_by("k")
        :process("where", {
          process = function(ctx, r, out) out { k = r.k, subtask = ctx:subtask(), p = ctx:parallelism() } end,
        })
        :collect()
    end, { parallelism = 4 })
    assert.are.equal(200, #values)
    for _, v in ipairs(values) do
      assert.are.equal(4, v.p)
      assert.are.equal(eddy.operator_index(eddy.key_group(v.k), 128, 4), v.subtask)
    end
  end)

  it("gives the same result at parallelism 1 and 3, and the same order on every run", function()
    local function totals(p)
      return collect_of(function(job)
        return job:from_generator { count = 3000, fn = function(i) return { k = i % 17, v = i } end }
          :key_by("k")
          :sum("sum", "v")
          :collect()
      end, { parallelism = p })
    end
    local one, three, again = totals(1), totals(3), totals(3)
    assert.are.same(three, again)
    local function finals(list)
      local f = {}
      for _, r in ipairs(list) do
        f[r.k] = r.v
      end
      return f
    end
    assert.are.same(finals(one), finals(three))
    local expected = {}
    for i = 1, 3000 do
      expected[i % 17] = (expected[i % 17] or 0) + i
    end
    assert.are.same(expected, finals(one))
  end)

  it("reduces per key, emitting every running result", function()
    local values = collect_of(function(job)
      return job:from_collection { { k = "a", v = 1 }, { k = "a", v = 2 }, { k = "b", v = 5 } }
        :key_by("k")
        :reduce("r", function(a, b) return { k = a.k, v = a.v + b.v } end)
        :collect()
    end)
    assert.are.same({ { k = "a", v = 1 }, { k = "a", v = 3 }, { k = "b", v = 5 } }, values)
  end)

  it("sums a field, keeping the first record's other fields, or sums plain numbers", function()
    local values = collect_of(function(job)
      return job:from_collection { { k = 1, v = 1, tag = "first" }, { k = 1, v = 2, tag = "second" } }
        :key_by("k"):sum("s", "v"):collect()
    end)
    assert.are.same({ { k = 1, v = 1, tag = "first" }, { k = 1, v = 3, tag = "first" } }, values)
    values = collect_of(function(job)
      return job:from_collection { 1, 2, 3, 4 }:key_by(function(x) return x % 2 end):sum("s"):collect()
    end)
    assert.are.same({ 1, 2, 4, 6 }, values)
  end)

  it("unions streams and rebalances over subtasks", function()
    local values = collect_of(function(job)
      local a = job:from_collection { "a1", "a2" }
      local b = job:from_collection { "b1", "b2", "b3" }
      return a:union(b):rebalance():map(function(x) return x:upper() end):collect()
    end, { parallelism = 2 })
    table.sort(values)
    assert.are.same({ "A1", "A2", "B1", "B2", "B3" }, values)
  end)

  it("sends out:side records to the side output stream", function()
    local job = eddy.job {}
    local main = job:from_collection { 1, 50, 2, 70 }
      :process("split", {
        process = function(_, x, out)
          if x > 10 then
            out:side("big", x)
          else
            out(x)
          end
        end,
      })
    local small = main:collect()
    local big = main:side_output("big"):map(function(x) return x * 2 end):collect()
    job:run()
    assert.are.same({ 1, 2 }, small:values())
    assert.are.same({ 100, 140 }, big:values())
  end)

  it("gives each of several consumers its own copy of a record", function()
    local job = eddy.job {}
    local src = job:from_collection { { n = 1 } }
    local a = src:map(function(r) r.n = r.n + 100; return r end):collect()
    local b = src:map(function(r) return r end):collect()
    job:run()
    assert.are.same({ { n = 101 } }, a:values())
    assert.are.same({ { n = 1 } }, b:values())
  end)

  it("calls a sink function for every record and reports metrics", function()
    local seen = {}
    local job = eddy.job { parallelism = 2 }
    job:from_collection { 1, 2, 3 }:map(function(x) return x end):sink(function(x) seen[#seen + 1] = x end)
    local result = job:run()
    table.sort(seen)
    assert.are.same({ 1, 2, 3 }, seen)
    local m = result.metrics
    assert.are.equal(2, #m.vertices)
    assert.are.equal(3, m.vertices[1].records_out)
    assert.are.equal(3, m.vertices[2].records_in)
    assert.are.same(m, job:metrics())
    assert.matches("map -> sink", job:graph(), 1, true)
  end)

  it("describes its graph", function()
    local job = eddy.job { name = "g", parallelism = 2 }
    job:from_collection { 1 }:key_by(function(x) return x end):process("p", { process = function() end }):print()
    local g = job:graph()
    assert.matches('job "g" (parallelism 2)', g, 1, true)
    assert.matches("[1] from_collection  (parallelism 1)", g, 1, true)
    assert.matches("[2] process p -> print  (parallelism 2, keyed state, max parallelism 128)", g, 1, true)
    assert.matches("<- [1] keyed by a function", g, 1, true)
  end)

  describe("fails with a message that says what and where", function()
    local function failure(build, config)
      local job = eddy.job(config or {})
      build(job)
      local ok, err = pcall(job.run, job)
      assert.is_false(ok)
      return err
    end

    it("for an error in a user function", function()
      local err = failure(function(job)
        job:from_collection { { n = 1 } }:key_by("n"):process("boom", {
          process = function(_, r) return r.missing.field end,
        })
      end)
      assert.matches("job_spec.lua:%d+: attempt to index a nil value %(field 'missing'%) %(in process boom%)", err)
    end)

    it("for a missing key field or a nil key", function()
      local err = failure(function(job)
        job:from_collection { { a = 1 } }:key_by("user"):process("p", { process = function() end })
      end)
      assert.matches('key_by("user"): the record has no field "user": {a = 1}', err, 1, true)
      err = failure(function(job)
        job:from_collection { 1 }:key_by(function() return nil end):process("p", { process = function() end })
      end)
      assert.matches("key_by: the key function returned nil for 1", err, 1, true)
    end)

    it("for map returning nil and out(nil)", function()
      assert.matches("map: the function returned nil for 1", failure(function(job)
        job:from_collection { 1 }:map(function() end):collect()
      end), 1, true)
      assert.matches("out: a record must not be nil", failure(function(job)
        job:from_collection { 1 }:process("p", { process = function(_, _, out) out(nil) end }):collect()
      end), 1, true)
    end)

    it("for a record or key that cannot be sent between subtasks", function()
      assert.are.equal("cannot store a function at record.f (in from_collection -> map)", failure(function(job)
        job:from_collection { 1 }:map(function() return { f = print } end)
          :key_by(function() return 1 end):process("p", { process = function() end })
      end))
      assert.are.equal("key_by: cannot store a function at key[1] (in from_collection)", failure(function(job)
        job:from_collection { 1 }:key_by(function() return { print } end):process("p", { process = function() end })
      end))
    end)
  end)

  describe("guards against misuse", function()
    it("refuses an out kept by one operator and called from another", function()
      local kept
      local job = eddy.job {}
      local many = {}
      for i = 1, 300 do many[i] = i end -- more than a batch: A is still running
      job:from_collection(many)
        :process("A", { process = function(_, v, out) kept = out; out(v) end })
        :rebalance()
        :process("B", { process = function(_, v) kept(v + 100) end })
      local ok, err = pcall(job.run, job)
      assert.is_false(ok)
      assert.matches("the output of from_collection -> process A was used while it was not running", err, 1, true)
    end)

    it("refuses records emitted after the end of input, and an out used after the job", function()
      local job = eddy.job {}
      local kept
      job:from_collection { { k = 1 } }:key_by("k"):process("p", {
        process = function(_, v, out) kept = out; out(v) end,
        close = function() kept { late = true } end,
      }):rebalance():collect()
      local ok, err = pcall(job.run, job)
      assert.is_false(ok)
      assert.matches("out: this operator has finished; its out cannot be used any more (in process p)", err, 1, true)
      job = eddy.job {}
      local c = job:from_collection { 1 }:process("p", { process = function(_, v, out) kept = out; out(v) end }):collect()
      job:run()
      assert.has_error(function() kept(2) end, "out: this operator has finished; its out cannot be used any more")
      assert.are.same({ 1 }, c:values())
    end)

    it("closes the operators already opened when one fails to open", function()
      local calls = {}
      local job = eddy.job {}
      job:from_collection { 1 }
        :process("A", { open = function() error("A cannot open", 0) end, process = function() end })
        :process("B", { open = function() calls[#calls + 1] = "B open" end, process = function() end,
                        close = function() calls[#calls + 1] = "B close" end })
      local ok, err = pcall(job.run, job)
      assert.is_false(ok)
      assert.matches("A cannot open", err, 1, true)
      assert.are.same({ "B open", "B close" }, calls)
    end)

    it("refuses two operators with one uid", function()
      local job = eddy.job {}
      local k = job:from_collection { 1 }:key_by(function(x) return x end)
      k:process("same", { process = function() end })
      k:reduce("same", function(a) return a end)
      local ok, err = pcall(job.run, job)
      assert.is_false(ok)
      assert.matches('uid "same" is used by two operators (process same and reduce same)', err, 1, true)
    end)

    it("ends a stream at a sink", function()
      local job = eddy.job {}
      local sink = job:from_collection { 1 }:print():name("out"):parallelism(1)
      assert.is_nil(sink.map)
      assert.matches("eddy.Sink print", tostring(sink), 1, true)
    end)

    it("reports a print that cannot write", function()
      local dir = run.tmpdir()
      local script = run.write(dir .. "/p.lua", [[
        local job = require("eddy").job {}
        job:from_collection { "x" }:print()
        job:run()
      ]])
      local _, err, code = run.sh(run.quote(run.exe) .. " run " .. run.quote(script) .. " > /dev/full")
      assert.are.equal(1, code)
      assert.matches("print: cannot write to standard output", err, 1, true)
    end)
  end)

  describe("configuration", function()
    it("suggests the closest key for a misspelt one", function()
      local ok, err = pcall(eddy.job, { paralelism = 2 })
      assert.is_false(ok)
      assert.matches("eddy.job: unknown key 'paralelism' (did you mean 'parallelism'?)", err, 1, true)
    end)

    it("says plainly which features this version cannot run", function()
      local ok, err = pcall(eddy.job, { executor = "threads" })
      assert.is_false(ok)
      assert.matches("executor 'threads' is not available in this version of eddy", err, 1, true)
      assert.is_truthy(eddy.job { flink = { ["state.backend"] = "rocksdb",
                                            ["state.backend.incremental"] = "true" } })
      assert.is_truthy(eddy.job { flink = { ["state.backend"] = "rocksdb" } })
      for _, factory in ipairs { "ROCKSDB", "HEAP" } do
        assert.is_truthy(eddy.job { flink = { ["state.backend"] = "rocksdb",
                                              ["state.backend.rocksdb.timer-service.factory"] = factory } })
      end
    end)

    it("refuses a parallelism above the max parallelism", function()
      local job = eddy.job { parallelism = 4, max_parallelism = 8 }
      local s = job:from_collection { 1 }:map(function(x) return x end)
      assert.has_error(function() s:parallelism(9); job:run() end)
    end)
  end)

  describe("sinks", function()
    it("prints like Flink: plain at parallelism 1, 'N> ' above, after a prefix", function()
      local dir = run.tmpdir()
      local script = run.write(dir .. "/print.lua", [[
        local eddy = require "eddy"
        local p = tonumber(arg[1])
        local job = eddy.job { parallelism = p }
        local src = job:from_collection { "a", { x = 1 }, 2.5 }
        src:print()
        src:print { prefix = "id" }
        job:run()
      ]])
      local out, err, code = run.eddy("run", script, "1")
      assert.are.equal(0, code, err)
      assert.are.same({ "a", "id> a", "{x = 1}", "id> {x = 1}", "2.5", "id> 2.5" }, run.lines(out))
      -- round robin from the one source subtask: a and 2.5 to the first
      -- print subtask, {x = 1} to the second
      out = run.eddy("run", script, "2")
      assert.are.same({ "1> a", "1> 2.5", "2> {x = 1}", "id:1> a", "id:1> 2.5", "id:2> {x = 1}" },
        run.lines(out))
    end)

    it("writes part files in jsonl, csv and lines", function()
      local dir = run.tmpdir()
      local job = eddy.job {}
      local src = job:from_collection { { a = 1, b = "x" }, { a = 2.5, b = "y,z" } }
      src:to_file(dir .. "/j")
      src:to_file(dir .. "/c", { format = "csv" })
      src:map(function(r) return r.b end):to_file(dir .. "/l", { format = "lines" })
      job:run()
      assert.are.equal('{"a":1,"b":"x"}\n{"a":2.5,"b":"y,z"}\n', run.read(dir .. "/j/part-0-0"))
      assert.are.equal('a,b\n1,x\n2.5,"y,z"\n', run.read(dir .. "/c/part-0-0"))
      assert.are.equal("x\ny,z\n", run.read(dir .. "/l/part-0-0"))
    end)
  end)
end)
