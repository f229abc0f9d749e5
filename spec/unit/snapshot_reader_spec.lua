-- eddy.savepoint.load: reading a retained checkpoint through the public
-- API. The job below runs on the manual clock, so its checkpoint is taken
-- at a known point (after every record) and holds known state: keyed
-- state of every kind at parallelism 2, window contents (namespaced) with
-- their timers, event and processing-time timers, and operator state (a
-- source's position, a collect sink's count per subtask). Its source then
-- fails, with no restart, so the checkpoint stays.

local eddy = require "eddy"
local run = require "run"

local RECORDS = {
  { user = "ann", amount = 5, ts = 1000 },
  { user = "bob", amount = 7, ts = 2000 },
  { user = "ann", amount = 3, ts = 3000 },
  { user = 42, amount = 1, ts = 4000 },
  { user = "ann", amount = 2, ts = 12000 },
}

-- Runs the job with checkpoints into dir; returns the checkpoint's folder.
local function make_checkpoint(dir)
  local job = eddy.job {
    name = "inspect-me", parallelism = 2, processing_time = "manual",
    checkpoint = { interval = "1s", dir = dir, externalized = "retain_on_cancellation" },
    restart = { strategy = "none" },
  }
  local i, snapshots = 0, 0
  local keyed = job:source {
    name = "orders",
    parallelism = 1,
    next = function()
      if snapshots >= 1 then
        error("stop after the first checkpoint")
      end
      i = i + 1
      return RECORDS[i] or false -- false: nothing yet, wait
    end,
    snapshot = function()
      snapshots = snapshots + 1
      return math.min(i, #RECORDS)
    end,
    restore = function(_, pos) i = pos end,
    timestamp = "ts", watermarks = eddy.watermarks.bounded("1h"),
  }:key_by("user")
  keyed:process("profile", {
    process = function(ctx, r, out)
      ctx:value_state("last"):update(r)
      ctx:list_state("amounts"):add(r.amount)
      ctx:map_state("by_ts"):put(r.ts, r.amount)
      ctx:reducing_state { name = "total", reduce = function(a, b) return a + b end }:add(r.amount)
      ctx:aggregating_state {
        name = "avg",
        create = function() return { n = 0, sum = 0 } end,
        add = function(acc, v) return { n = acc.n + 1, sum = acc.sum + v.amount } end,
        result = function(acc) return acc.sum / acc.n end,
        merge = function(a, b) return { n = a.n + b.n, sum = a.sum + b.sum } end,
      }:add(r)
      ctx.timers:register_event_time(r.ts + 10000)
      ctx.timers:register_processing_time(500000)
      out(r)
    end,
  }):collect()
  keyed:window(eddy.windows.tumbling("10s"))
    :reduce("sums", function(a, b) return { user = a.user, amount = a.amount + b.amount } end)
    :sink(function() end)
  local ok, err = pcall(job.run, job)
  assert(not ok and tostring(err):find("stop after the first checkpoint", 1, true), tostring(err))
  local p = assert(io.popen("ls -d " .. run.quote(dir) .. "/*/chk-*"))
  local found = {}
  for line in p:lines() do
    found[#found + 1] = line
  end
  p:close()
  assert(#found == 1, "checkpoints: " .. table.concat(found, " "))
  return found[1]
end

local function collect(iter)
  local out = {}
  for key, ns, value, kg in iter do
    out[#out + 1] = { key, ns, value, kg }
  end
  return out
end

local function sh(cmd)
  assert(os.execute(cmd), cmd)
end

describe("eddy.savepoint.load", function()
  local dir, path
  setup(function()
    dir = run.tmpdir()
    path = make_checkpoint(dir .. "/chk")
  end)
  teardown(run.cleanup)

  it("tells what the checkpoint is", function()
    local snap = eddy.savepoint.load(path)
    local job = path:match("/(%x+)/chk%-%d+$")
    assert.equal(1, snap.id)
    assert.equal("checkpoint", snap.kind)
    assert.equal(job, snap.job)
    assert.equal(32, #snap.job)
    assert.equal("inspect-me", snap.name)
    assert.equal(path, snap.path)
    assert.equal(path:match("chk%-1$") and true, true)
    assert.equal("integer", math.type(snap.time))
    assert.is_true(math.abs(snap.time - os.time() * 1000) < 600000)
    assert.are.same({ profile = 128, ["source-1"] = 128, sums = 128 }, snap.max_parallelism)
    -- the _metadata file names it just as well
    assert.equal(path, eddy.savepoint.load(path .. "/_metadata").path)
  end)

  it("lists its operators by uid with their states and key-group ranges", function()
    local snap = eddy.savepoint.load(path)
    local halves = { { subtask = 0, key_groups = { 0, 63 } }, { subtask = 1, key_groups = { 64, 127 } } }
    assert.are.same({
      { uid = "profile", vertex = "process profile -> collect", parallelism = 2,
        max_parallelism = 128, keyed = true, subtasks = halves,
        states = { "amounts", "avg", "by_ts", "last", "total", "op-5" } },
      { uid = "source-1", vertex = "orders -> assign_timestamps", parallelism = 1,
        max_parallelism = 128, keyed = false, subtasks = { { subtask = 0, key_groups = { 0, 127 } } },
        states = { "source-1" } },
      { uid = "sums", vertex = "window reduce sums -> sink", parallelism = 2,
        max_parallelism = 128, keyed = true, subtasks = halves,
        states = { "window-contents" } },
    }, snap:operators())
  end)

  it("gives each state's kind: keyed states by name, then operator state", function()
    local snap = eddy.savepoint.load(path)
    assert.are.same({
      { name = "amounts", kind = "list" }, { name = "avg", kind = "aggregating" },
      { name = "by_ts", kind = "map" }, { name = "last", kind = "value" },
      { name = "total", kind = "reducing" }, { name = "op-5", kind = "operator" },
    }, snap:states("profile"))
    assert.are.same({ { name = "window-contents", kind = "value" } }, snap:states("sums"))
    assert.are.same({ { name = "source-1", kind = "operator" } }, snap:states("source-1"))
  end)

  it("iterates over key, namespace and value of every kind of keyed state", function()
    local snap = eddy.savepoint.load(path)
    -- by key group (42 -> 29, "bob" -> 87, "ann" -> 100), from both subtasks
    assert.equal(29, eddy.key_group(42))
    assert.are.same({
      { 42, nil, { user = 42, amount = 1, ts = 4000 }, 29 },
      { "bob", nil, { user = "bob", amount = 7, ts = 2000 }, 87 },
      { "ann", nil, { user = "ann", amount = 2, ts = 12000 }, 100 },
    }, collect(snap:entries("profile", "last")))
    assert.are.same({ { 42, nil, { 1 }, 29 }, { "bob", nil, { 7 }, 87 }, { "ann", nil, { 5, 3, 2 }, 100 } },
      collect(snap:entries("profile", "amounts")))
    assert.are.same({
      { 42, nil, { [4000] = 1 }, 29 }, { "bob", nil, { [2000] = 7 }, 87 },
      { "ann", nil, { [1000] = 5, [3000] = 3, [12000] = 2 }, 100 },
    }, collect(snap:entries("profile", "by_ts")))
    assert.are.same({ { 42, nil, 1, 29 }, { "bob", nil, 7, 87 }, { "ann", nil, 10, 100 } },
      collect(snap:entries("profile", "total")))
    -- aggregating state holds the accumulator
    assert.are.same({
      { 42, nil, { n = 1, sum = 1 }, 29 }, { "bob", nil, { n = 1, sum = 7 }, 87 },
      { "ann", nil, { n = 3, sum = 10 }, 100 },
    }, collect(snap:entries("profile", "avg")))
  end)

  it("gives window state with its window as namespace", function()
    local snap = eddy.savepoint.load(path)
    local first, second = { start = 0, stop = 10000 }, { start = 10000, stop = 20000 }
    assert.are.same({
      { 42, first, { user = 42, amount = 1, ts = 4000 }, 29 },
      { "bob", first, { user = "bob", amount = 7, ts = 2000 }, 87 },
      { "ann", first, { user = "ann", amount = 8 }, 100 },
      { "ann", second, { user = "ann", amount = 2, ts = 12000 }, 100 },
    }, collect(snap:entries("sums", "window-contents")))
    assert.are.same({ user = "ann", amount = 2, ts = 12000 },
      snap:state("sums", "window-contents", "ann", second))
    assert.is_nil(snap:state("sums", "window-contents", "bob", second))
  end)

  it("gives operator state per subtask: the key is the subtask index", function()
    local snap = eddy.savepoint.load(path)
    assert.are.same({ { 0, nil, { position = 5 } } }, collect(snap:entries("source-1", "source-1")))
    -- the collect sink chained to each subtask of profile counts what it got
    assert.are.same({ { 0, nil, { count = 1 } }, { 1, nil, { count = 4 } } },
      collect(snap:entries("profile", "op-5")))
  end)

  it("lists pending timers in firing order, event time first", function()
    local snap = eddy.savepoint.load(path)
    assert.are.same({
      { kind = "event", key = "ann", key_group = 100, ts = 11000 },
      { kind = "event", key = "bob", key_group = 87, ts = 12000 },
      { kind = "event", key = "ann", key_group = 100, ts = 13000 },
      { kind = "event", key = 42, key_group = 29, ts = 14000 },
      { kind = "event", key = "ann", key_group = 100, ts = 22000 },
      { kind = "processing", key = 42, key_group = 29, ts = 500000 },
      { kind = "processing", key = "bob", key_group = 87, ts = 500000 },
      { kind = "processing", key = "ann", key_group = 100, ts = 500000 },
    }, snap:timers("profile"))
    local first, second = { start = 0, stop = 10000 }, { start = 10000, stop = 20000 }
    assert.are.same({
      { kind = "event", key = 42, key_group = 29, namespace = first, ts = 9999 },
      { kind = "event", key = "bob", key_group = 87, namespace = first, ts = 9999 },
      { kind = "event", key = "ann", key_group = 100, namespace = first, ts = 9999 },
      { kind = "event", key = "ann", key_group = 100, namespace = second, ts = 19999 },
    }, snap:timers("sums"))
    assert.are.same({}, snap:timers("source-1"))
  end)

  it("gives tables as the harness does with snap:state", function()
    local snap = eddy.savepoint.load(path)
    assert.are.same({ 5, 3, 2 }, snap:state("profile", "amounts", "ann"))
    assert.equal(1, snap:state("profile", "total", 42))
    assert.is_nil(snap:state("profile", "total", "42"))
    assert.are.same({
      { key = 42, key_group = 29, value = 1 }, { key = "bob", key_group = 87, value = 7 },
      { key = "ann", key_group = 100, value = 10 },
    }, snap:state("profile", "total"))
    assert.are.same({ ["source-1"] = { { key = 0, value = { position = 5 } } } }, snap:state("source-1"))
  end)

  it("prints a summary with every operator, state and count", function()
    local snap = eddy.savepoint.load(path)
    local taken = os.date("%Y-%m-%d %H:%M:%S", snap.time // 1000) .. (".%03d"):format(snap.time % 1000)
    assert.equal(table.concat({
      ('checkpoint 1 of "inspect-me" (job %s)'):format(snap.job),
      "  taken " .. taken,
      "  in " .. path,
      "OPERATOR  VERTEX                       PARALLELISM  STATE            KIND         ENTRIES",
      "profile   process profile -> collect   2/128        amounts          list         3",
      "                                                    avg              aggregating  3",
      "                                                    by_ts            map          3",
      "                                                    last             value        3",
      "                                                    total            reducing     3",
      "                                                    op-5             operator     2",
      "                                                    (timers)                      8",
      "source-1  orders -> assign_timestamps  1/128        source-1         operator     1",
      "sums      window reduce sums -> sink   2/128        window-contents  value        4",
      "                                                    (timers)                      4",
    }, "\n"), tostring(snap))
    -- the REPL prints it so
    assert.equal(tostring(snap), eddy.inspect(snap))
  end)

  it("reads a savepoint the same way", function()
    local sp = dir .. "/savepoint-abcdef-0123456789ab"
    sh(("cp -r %s %s && sed -i 's/\"kind\": *\"checkpoint\"/\"kind\":\"savepoint\"/' %s/_metadata")
      :format(run.quote(path), run.quote(sp), run.quote(sp)))
    local snap = eddy.savepoint.load(sp .. "/_metadata")
    assert.equal("savepoint", snap.kind)
    assert.equal(sp, snap.path)
    assert.are.same({ { "ann", nil, 10, 100 } }, (function()
      local out = {}
      for k, ns, v, kg in snap:entries("profile", "total") do
        if k == "ann" then out[#out + 1] = { k, ns, v, kg } end
      end
      return out
    end)())
    assert.truthy(tostring(snap):find("^savepoint 1 of \"inspect%-me\""))
  end)

  it("closes, after which it says so", function()
    local snap <close> = eddy.savepoint.load(path)
    snap:close()
    snap:close()
    assert.has_error(function() snap:states("profile") end, "snap:states: the snapshot is closed")
    assert.equal("eddy.Snapshot (closed): checkpoint 1 in " .. path, tostring(snap))
  end)

  describe("refuses, with a one-line message", function()
    local function message(f)
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.is_nil(err:find("\n"), err)
      return err
    end

    it("a path that does not exist", function()
      assert.equal("eddy.savepoint.load: " .. dir .. "/nope: No such file or directory",
        message(function() eddy.savepoint.load(dir .. "/nope") end))
    end)

    it("a folder that is not a checkpoint, pointing at the ones it holds", function()
      assert.equal(("eddy.savepoint.load: %s/chk: not a checkpoint or savepoint (no _metadata in it)"
        .. "; it holds 1 checkpoint, the latest %s"):format(dir, path),
        message(function() eddy.savepoint.load(dir .. "/chk") end))
      local empty = run.tmpdir()
      assert.equal(("eddy.savepoint.load: %s: not a checkpoint or savepoint (no _metadata in it)")
        :format(empty), message(function() eddy.savepoint.load(empty) end))
    end)

    it("a file other than _metadata", function()
      assert.equal(("eddy.savepoint.load: %s/profile-0.keyed: neither a checkpoint folder nor its _metadata")
        :format(path), message(function() eddy.savepoint.load(path .. "/profile-0.keyed") end))
    end)

    it("a damaged file, naming it", function()
      local copy = dir .. "/damaged/chk-1"
      sh(("mkdir -p %s/damaged && cp -r %s %s"):format(run.quote(dir), run.quote(path), run.quote(copy)))
      -- flip the last byte of a keyed file
      local f = assert(io.open(copy .. "/profile-1.keyed", "r+b"))
      local size = f:seek("end")
      f:seek("set", size - 1)
      local b = f:read(1)
      f:seek("set", size - 1)
      f:write(string.char(b:byte() ~ 0xff))
      f:close()
      local err = message(function() eddy.savepoint.load(copy) end)
      assert.truthy(err:find(("^eddy%%.savepoint%%.load: %s is damaged: chk%%-1/profile%%-1%%.keyed: checksum mismatch")
        :format(copy:gsub("%p", "%%%0"))), err)
    end)

    it("a truncated _metadata", function()
      local copy = dir .. "/truncated/chk-1"
      sh(("mkdir -p %s/truncated && cp -r %s %s && truncate -s 100 %s/_metadata"):format(run.quote(dir),
        run.quote(path), run.quote(copy), run.quote(copy)))
      local err = message(function() eddy.savepoint.load(copy) end)
      assert.truthy(err:find(("^eddy%%.savepoint%%.load: %s is damaged: chk%%-1/_metadata: ")
        :format(copy:gsub("%p", "%%%0"))), err)
    end)

    it("an operator or state it does not have, or a bad argument", function()
      local snap = eddy.savepoint.load(path)
      assert.truthy(message(function() snap:states("nope") end):find(
        'snap:states: no operator "nope" in chk-1 (its operators: profile, source-1, sums)', 1, true))
      assert.truthy(message(function() snap:entries("profile", "nope") end):find(
        'snap:entries: operator "profile" has no state "nope" (its states: amounts, avg, by_ts, last, total, op-5)',
        1, true))
      assert.truthy(message(function() snap:timers("nope") end):find('snap:timers: no operator "nope"', 1, true))
      assert.truthy(message(function() eddy.savepoint.load(42) end):find(
        "eddy.savepoint.load: expected the path of a checkpoint or savepoint, got number", 1, true))
    end)
  end)
end)
