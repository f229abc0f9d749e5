-- The harness: a keyed process function driven record by record, with its
-- output, side outputs and state open to inspection after every step.

local eddy = require "eddy"

local counter = {
  open = function(ctx) ctx:value_state("count") end,
  process = function(ctx, r, out)
    local c = ctx:value_state("count")
    c:update((c:value() or 0) + 1)
    out { user = ctx:key(), n = c:value(), ts = ctx:timestamp() }
    if r.alert then
      out:side("alerts", r.user)
    end
  end,
}

describe("eddy.harness", function()
  it("returns what each push emitted and keeps it for h:output()", function()
    local h = eddy.harness { process = counter, key_by = "user" }
    assert.are.same({ { user = "ann", n = 1 } }, h:push { user = "ann" })
    assert.are.same({ { user = "ann", n = 2, ts = 1000 } }, h:push({ user = "ann" }, 1000))
    h:push { user = "bob" }
    assert.are.same({
      { user = "ann", n = 1 }, { user = "ann", n = 2, ts = 1000 }, { user = "bob", n = 1 },
    }, h:output())
    assert.are.same({}, h:output())
  end)

  it("collects side outputs per tag", function()
    local h = eddy.harness { process = counter, key_by = "user" }
    h:push { user = "ann", alert = true }
    h:push { user = "bob", alert = true }
    assert.are.same({ "ann", "bob" }, h:side_output("alerts"))
    assert.are.same({}, h:side_output("alerts"))
    assert.are.same({}, h:side_output("other"))
  end)

  it("shows state by name and key", function()
    local h = eddy.harness { process = counter, key_by = function(r) return r.user:upper() end }
    h:push { user = "ann" }
    h:push { user = "ann" }
    assert.are.equal(2, h:state("count", "ANN"))
    assert.is_nil(h:state("count", "ann"))
    assert.are.same({ { key = "ANN", key_group = eddy.key_group("ANN"), value = 2 } }, h:state("count"))
    assert.are.same({ count = h:state("count") }, h:state())
  end)

  it("snapshots its state in memory and as a savepoint, and restores from both", function()
    local run = require "run"
    local fns = {
      process = function(ctx, r, out)
        local n = ctx:value_state("n")
        n:update((n:value() or 0) + 1)
        ctx.timers:register_event_time(100)
        out(n:value())
      end,
      on_timer = function(ctx, _, out) out("timer " .. ctx:key()) end,
      process_broadcast = function(ctx, rule) ctx:broadcast_state("rules"):put(rule, true) end,
    }
    local h = eddy.harness { process = fns, key_by = "k", uid = "counter" }
    h:push { k = "a" }
    h:push { k = "a" }
    h:push { k = "b" }
    h:push_broadcast("r1")
    local snap = h:snapshot()
    assert.equal("snapshot", snap.kind)
    local rows = {}
    for key, ns, value in snap:entries("counter", "n") do
      rows[key] = value
      assert.is_nil(ns)
    end
    assert.are.same({ a = 2, b = 1 }, rows)
    assert.equal(2, #snap:timers("counter"))
    -- the harness goes on; the snapshot does not change
    h:push { k = "a" }
    local dir = run.tmpdir()
    local path = h:savepoint(dir)
    assert.truthy(path:find(dir .. "/savepoint-", 1, true), path)
    assert.equal("savepoint", eddy.savepoint.load(path).kind)
    h:close()

    local from_snap = eddy.harness { process = fns, key_by = "k", restore = snap }
    assert.are.same({ 3 }, from_snap:push { k = "a" })
    assert.are.same({ rules = { r1 = true } }, from_snap:broadcast_state())
    -- ties fire in eddy's deterministic order (key group first)
    assert.are.same({ "timer b", "timer a" }, from_snap:watermark(100))
    local from_disk = eddy.harness { process = fns, key_by = "k", restore = path }
    assert.are.same({ 4 }, from_disk:push { k = "a" })
    assert.is_true(from_disk._ctx:is_restored())
    run.cleanup()

    local function fails(opts, msg)
      local ok, err = pcall(eddy.harness, opts)
      assert.is_false(ok)
      assert.matches(msg, err, 1, true)
    end
    fails({ process = fns, key_by = "k", restore = snap, uid = "other" },
      'eddy.harness: restore: (in memory) has no keyed state of operator "other" (its keyed operators: counter)')
    fails({ process = fns, key_by = "k", restore = snap, max_parallelism = 64 },
      'keeps "counter" with max parallelism 128, not 64')
    fails({ process = fns, key_by = "k", restore = "/nonexistent/sp" },
      "eddy.harness: restore: /nonexistent/sp: ")
    fails({ process = fns, key_by = "k", restore = {} },
      "eddy.harness: restore: expected a path or a Snapshot")
    assert.error_matches(function() eddy.harness { process = fns, key_by = "k" }:savepoint(nil) end,
      "h:savepoint: expected a folder")
  end)

  it("lists operator state beside a keyed state of the same name in its snapshot", function()
    -- the broadcast state is kept under the operator's uid, "n", which is
    -- also the name of the keyed state
    local h = eddy.harness {
      key_by = "k", uid = "n",
      process = {
        process = function(ctx) ctx:value_state("n"):update(1) end,
        process_broadcast = function(ctx, r) ctx:broadcast_state("rules"):put(r, true) end,
      },
    }
    h:push { k = "a" }
    h:push_broadcast("r1")
    local snap = h:snapshot()
    assert.are.same({ { name = "n", kind = "value" }, { name = "n", kind = "operator" } }, snap:states("n"))
    local keyed, operator = {}, {}
    for key, _, value in snap:entries("n", "n") do
      keyed[key] = value
    end
    for subtask, _, value in snap:entries("n", "n", "operator") do
      operator[subtask] = value
    end
    assert.are.same({ a = 1 }, keyed)
    assert.are.same({ [0] = { lists = { rules = { mode = "broadcast", items = { { "r1", true } } } } } },
      operator)
  end)

  it("hands its savepoint to a job, which restores it at another parallelism", function()
    local run = require "run"
    local fns = {
      process = function(ctx, _, out)
        local n = ctx:value_state("n")
        n:update((n:value() or 0) + 1)
        out(ctx:key() .. "=" .. n:value())
      end,
    }
    local h = eddy.harness { process = fns, key_by = "k", uid = "counter" }
    for _, k in ipairs { "a", "b", "a", "c", "a" } do
      h:push { k = k }
    end
    local path = h:savepoint(run.tmpdir())
    local job = eddy.job { parallelism = 3, restore = path }
    local c = job:from_collection { { k = "a" }, { k = "b" }, { k = "d" } }:uid("keys"):key_by("k")
      :process("counter", fns):collect()
    job:run()
    local got = c:values()
    table.sort(got)
    assert.are.same({ "a=4", "b=2", "d=1" }, got)
    run.cleanup()
  end)

  it("calls open at creation and close once", function()
    local calls = {}
    local h = eddy.harness {
      key_by = "k",
      process = {
        open = function() calls[#calls + 1] = "open" end,
        process = function() end,
        close = function() calls[#calls + 1] = "close" end,
      },
    }
    h:close()
    h:close()
    assert.are.same({ "open", "close" }, calls)
    assert.has_error(function() h:push { k = 1 } end, "h:push: the harness is closed")
  end)

  it("refuses a bad configuration or record with a clear message", function()
    local ok, err = pcall(eddy.harness, { key_by = "k" })
    assert.is_false(ok)
    assert.matches("eddy.harness: process", err, 1, true)
    ok, err = pcall(eddy.harness, { process = counter, key_by = "k", backnd = "heap" })
    assert.is_false(ok)
    assert.matches("unknown key 'backnd' (did you mean 'backend'?)", err, 1, true)
    local h = eddy.harness { process = counter, key_by = "user" }
    ok, err = pcall(h.push, h, { name = "x" })
    assert.is_false(ok)
    assert.matches('key_by("user"): the record has no field "user"', err, 1, true)
    ok, err = pcall(h.push, h, { user = "x" }, 1.5)
    assert.is_false(ok)
    assert.matches("h:push: the timestamp is not a whole number of milliseconds: 1.5", err, 1, true)
  end)

  it("drives a keyed broadcast process function: push_broadcast and broadcast_state", function()
    local h = eddy.harness {
      key_by = "color",
      process = {
        process_broadcast = function(ctx, rule)
          ctx:broadcast_state("rules"):put(rule.name, rule.shape)
        end,
        process = function(ctx, item, out)
          for name, shape in ctx:broadcast_state("rules"):pairs() do
            if item.shape == shape then
              out(name .. ":" .. ctx:key())
            end
          end
        end,
      },
    }
    assert.are.same({}, h:push { color = "red", shape = "square" })
    assert.are.same({}, h:push_broadcast { name = "sq", shape = "square" })
    assert.are.same({ "sq:red" }, h:push { color = "red", shape = "square" })
    assert.are.same({ rules = { sq = "square" } }, h:broadcast_state())
    assert.are.same({ sq = "square" }, h:broadcast_state("rules"))
    local plain = eddy.harness { key_by = "k", process = { process = function() end } }
    assert.error_matches(function() plain:push_broadcast(1) end, "has no process_broadcast")
    assert.error_matches(function() h:push_broadcast(nil) end, "a record must not be nil")
  end)
end)
