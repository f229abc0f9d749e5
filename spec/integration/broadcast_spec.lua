-- Broadcast state with connected streams (Flink's KeyedBroadcastProcess-
-- Function and BroadcastProcessFunction): every subtask sees every record
-- of the broadcast side and keeps its own copy of broadcast state, which
-- checkpoints and savepoints hold and a restore hands out per SEMANTICS.md
-- §6 (new subtask i gets old subtask i % old parallelism's copy).

local eddy = require "eddy"
local run = require "run"

-- A keyed stream of numbers connected to a broadcast stream of thresholds:
-- process emits "key:value>threshold" for each threshold the value is over.
local function thresholds_job(job, thresholds, values)
  local rules = job:from_collection(thresholds):uid("thresholds"):broadcast()
  return job:from_collection(values):uid("values")
    :key_by("k")
    :connect(rules)
    :process("check", {
      process_broadcast = function(ctx, t)
        ctx:broadcast_state("limits"):put(t.name, t.limit)
      end,
      process = function(ctx, v, out)
        for name, limit in ctx:broadcast_state("limits"):pairs() do
          if v.n > limit then
            out(("%s:%d>%s"):format(ctx:key(), v.n, name))
          end
        end
      end,
    })
    :collect()
end

describe("broadcast state", function()
  after_each(run.cleanup)

  it("reaches every subtask, before the records that came with it", function()
    for _, p in ipairs { 1, 3 } do
      local job = eddy.job { parallelism = p }
      local c = thresholds_job(job, { { name = "low", limit = 1 }, { name = "high", limit = 10 } },
        { { k = "a", n = 5 }, { k = "b", n = 20 }, { k = "c", n = 0 }, { k = "d", n = 11 } })
      job:run()
      local got = c:values()
      table.sort(got)
      assert.are.same({ "a:5>low", "b:20>high", "b:20>low", "d:11>high", "d:11>low" }, got)
    end
  end)

  it("is read-only in process and has no key in process_broadcast", function()
    local job = eddy.job {}
    local rules = job:from_collection { 1 }:broadcast()
    local seen = {}
    job:from_collection { { k = "a" } }:key_by("k"):connect(rules):process("p", {
      process_broadcast = function(ctx, x)
        seen.key = ctx:key() or "none"
        seen.keyed = select(2, pcall(function() return ctx:value_state("v"):value() end))
        ctx:broadcast_state("s"):put("x", x)
      end,
      process = function(ctx)
        ctx:broadcast_state("s"):put("y", 2)
      end,
    }):collect()
    local ok, err = pcall(job.run, job)
    assert.is_false(ok)
    assert.matches('broadcast state "s":put: broadcast state is read%-only in process', err)
    assert.equal("none", seen.key)
    assert.matches("no current key", seen.keyed)
  end)

  it("applies a function to every key's state from process_broadcast", function()
    local job = eddy.job {}
    local rules = job:from_collection { "reset" }:broadcast()
    local c = job:from_collection { { k = "a" }, { k = "b" }, { k = "a" } }
      :key_by("k")
      :connect(rules)
      :process("count", {
        process_broadcast = function(ctx, cmd, out)
          ctx:apply_to_keyed_state("value", "n", function(key, n)
            out(("%s had %s"):format(key, tostring(n:value())))
          end)
        end,
        process = function(ctx, _, out)
          local n = ctx:value_state("n")
          n:update((n:value() or 0) + 1)
        end,
      })
      :collect()
    job:run()
    -- the broadcast record is read first: no key has state yet
    assert.are.same({}, c:values())
  end)

  it("works on a stream that is not keyed (BroadcastProcessFunction)", function()
    local job = eddy.job { parallelism = 2 }
    local rules = job:from_collection { "!" }:broadcast()
    local c = job:from_collection { "a", "b", "c" }:rebalance():connect(rules):process("bang", {
      process_broadcast = function(ctx, s)
        ctx:broadcast_state("suffix"):put("s", s)
      end,
      process = function(ctx, v, out)
        out(v .. ctx:broadcast_state("suffix"):get("s"))
      end,
    }):collect()
    job:run()
    local got = c:values()
    table.sort(got)
    assert.are.same({ "a!", "b!", "c!" }, got)
  end)

  it("sends every record of stream:broadcast() to every subtask", function()
    local job = eddy.job { parallelism = 3 }
    local c = job:from_collection { 1, 2 }:broadcast():map(function(x) return x * 10 end):collect()
    job:run()
    local got = c:values()
    table.sort(got)
    assert.are.same({ 10, 10, 10, 20, 20, 20 }, got)
  end)

  it("goes through a savepoint and a restore at another parallelism", function()
    local dir = run.tmpdir()
    local job = eddy.job { name = "bc", parallelism = 2 }
    thresholds_job(job, { { name = "low", limit = 1 }, { name = "high", limit = 10 } }, {})
    local sp = job:run { savepoint = dir }.savepoint
    assert.truthy(sp)
    -- the savepoint holds one copy per subtask
    local snap = eddy.savepoint.load(sp)
    local copies = 0
    for _, _, value in snap:entries("check", "check") do
      copies = copies + 1
      -- entries in the order of their keys' encoding (shorter strings first)
      assert.are.same({ { "low", 1 }, { "high", 10 } }, value.lists.limits.items)
    end
    snap:close()
    assert.equal(2, copies)
    for _, p in ipairs { 3, 1 } do
      local copies_at_open = {}
      local job2 = eddy.job { name = "bc", parallelism = p, restore = sp,
                              allow_non_restored_state = true }
      local rules = job2:from_collection({}):uid("thresholds"):broadcast()
      local c = job2:from_collection({ { k = "a", n = 5 }, { k = "b", n = 20 }, { k = "c", n = 7 } })
        :uid("values-2")
        :key_by("k")
        :connect(rules)
        :process("check", {
          open = function(ctx)
            local copy = {}
            for name, limit in ctx:broadcast_state("limits"):pairs() do
              copy[name] = limit
            end
            copies_at_open[ctx:subtask() + 1] = copy
          end,
          process_broadcast = function() end,
          process = function(ctx, v, out)
            for name, limit in ctx:broadcast_state("limits"):pairs() do
              if v.n > limit then
                out(("%s>%s"):format(ctx:key(), name))
              end
            end
          end,
        })
        :collect()
      job2:run()
      local got = c:values()
      table.sort(got)
      assert.are.same({ "a>low", "b>high", "b>low", "c>low" }, got, "parallelism " .. p)
      -- every subtask starts with the same copy
      assert.equal(p, #copies_at_open)
      for i = 1, p do
        assert.are.same({ low = 1, high = 10 }, copies_at_open[i])
      end
    end
  end)

  it("survives a failure and restart from a checkpoint", function()
    local dir = run.tmpdir()
    local failed = false
    local job = eddy.job { name = "bc-restart", parallelism = 2, processing_time = "manual",
                           checkpoint = { interval = "10ms", dir = dir },
                           restart = { strategy = "fixed_delay", attempts = 2, delay = "1ms" } }
    local rules = job:from_collection { { name = "low", limit = 1 } }:broadcast()
    local values = {}
    for i = 1, 400 do
      values[i] = { k = "k" .. (i % 7), n = i }
    end
    local c = job:from_generator { count = 400, rate = 20000, fn = function(i) return values[i] end }
      :key_by("k")
      :connect(rules)
      :process("check", {
        process_broadcast = function(ctx, t)
          ctx:broadcast_state("limits"):put(t.name, t.limit)
        end,
        process = function(ctx, v, out)
          if v.n == 300 and not failed and ctx:is_restored() == false then
            failed = true
            error("boom")
          end
          -- after the restart the rules are back from the checkpoint
          if ctx:broadcast_state("limits"):get("low") then
            out(v.n)
          end
        end,
      })
      :collect()
    job:run()
    assert.is_true(failed)
    local got = c:values()
    assert.equal(400, #got)
  end)

  it("refuses what cannot be connected, with clear messages", function()
    local job = eddy.job {}
    local s = job:from_collection { 1 }
    assert.has_error(function() s:key_by(tostring):connect(s) end,
      "connect: expected a broadcast stream (stream:broadcast()), got a stream that is not broadcast")
    local b = s:broadcast()
    assert.has_error(function() s:key_by(tostring):connect(b):process("x", { process = print }) end,
      "process: a connected stream needs a process_broadcast function too")
    assert.error_matches(function()
      s:key_by(tostring):connect(b):process("x", { process = print, process_broadcast = print,
                                                   snapshot_state = print })
    end, "unknown function 'snapshot_state'")
    assert.error_matches(function()
      s:connect(b):process("x", { process = print, process_broadcast = print, on_timer = print })
    end, "unknown function 'on_timer'")
    local other = eddy.job {}:from_collection { 1 }:broadcast()
    assert.has_error(function() s:connect(other) end, "connect: the broadcast stream belongs to another job")
    -- broadcast state outside a connected operator
    local job2 = eddy.job {}
    job2:from_collection { 1 }:key_by(tostring):process("p", {
      process = function(ctx) ctx:broadcast_state("x") end,
    }):collect()
    local ok, err = pcall(job2.run, job2)
    assert.is_false(ok)
    assert.matches("ctx:broadcast_state: broadcast state belongs to the process function of a stream "
      .. "connected to a broadcast stream", err, 1, true)
  end)
end)
