-- Timers kept in RocksDB (Flink's default timer-service factory for its
-- RocksDB backend), end to end: a job registers an event-time timer per
-- record and a window's timers (namespaced by the window) while it takes
-- incremental checkpoints. Its checkpoints carry the timers inside the
-- RocksDB files, not beside them; restored at the same parallelism (the
-- files become the database), at another one (rows copied by key group),
-- on the heap backend and on RocksDB with timers in memory, the job ends
-- exactly as a run that never stopped, which is the reference: timers
-- fired (what the keyed function recorded), and timers still pending at
-- the end (kept in the final savepoint).
--
-- The job runs on the manual clock, so checkpoints fall between the
-- phases of the input at the same places every run: phase p at time
-- p * 1000 + 500, checkpoint n at n * 1000 (holding phases 1 .. n - 1).

local eddy = require "eddy"
local core = require "eddy.core"
local run = require "run"

local KEYS = 200
local PHASES = 5

local function rocksdb(dir, timers)
  return { type = "rocksdb", incremental = true, dir = dir .. "/rocksdb", timers = timers }
end

-- opts: dir, backend, parallelism, restore, last (the last phase read),
-- stop_at (error out at the first record of that phase: checkpoint
-- stop_at - 1 has completed)
local function make_job(opts)
  local job = eddy.job {
    name = "timers", parallelism = opts.parallelism or 1, max_parallelism = 128,
    processing_time = "manual",
    state_backend = opts.backend,
    checkpoint = { interval = 1000, dir = opts.dir .. "/chk", retained = 2,
                   externalized = "retain_on_cancellation" },
    restart = { strategy = "none" },
    restore = opts.restore,
  }
  local phase, i = 1, 0
  local keyed = job:source {
    arrival_time = "at",
    next = function()
      i = i + 1
      if i > KEYS then
        phase, i = phase + 1, 1
      end
      if phase > (opts.last or PHASES) then
        return nil
      end
      -- keys in a different order every phase, times rising
      return { k = (i * 37 + phase * 11) % KEYS + 1, p = phase, ts = phase * 1000 + i,
               at = phase * 1000 + 500 }
    end,
    snapshot = function() return { phase, i } end,
    restore = function(_, pos) phase, i = pos[1], pos[2] end,
  }:uid("src")
    :assign_timestamps { timestamp = "ts", watermarks = eddy.watermarks.bounded(0) }
    :key_by("k")
  keyed:process("t", {
    process = function(ctx, r)
      if r.p == opts.stop_at then
        error("stopping here")
      end
      -- due within the next phase or the one after: pending across
      -- checkpoints; the same time for two records of a key is one timer
      ctx.timers:register_event_time(r.ts - r.ts % 100 + 1500)
    end,
    on_timer = function(ctx, ts)
      ctx:list_state("fired"):add(ts)
    end,
  })
  keyed:window(eddy.windows.tumbling(700)):reduce("w", function(a, b)
    return { k = a.k, p = math.max(a.p, b.p), ts = a.ts, at = a.at }
  end)
  return job
end

local function sorted_timers(snap, uid)
  local list = {}
  for _, t in ipairs(snap:timers(uid)) do
    list[#list + 1] = ("%s %s %s %s"):format(t.kind, eddy.inspect(t.key), t.ts,
                                             eddy.inspect(t.namespace))
  end
  table.sort(list)
  return list
end

-- What a snapshot holds that this spec compares: the timers of both keyed
-- operators, and what fired, key by key.
local function contents(path)
  local snap = eddy.savepoint.load(path)
  local fired = {}
  -- no timer fired yet: no state registered
  local ok, entries = pcall(snap.entries, snap, "t", "fired")
  for key, _, value in ok and entries or function() end do
    fired[#fired + 1] = key .. ": " .. table.concat(value, ",")
  end
  table.sort(fired)
  return { timers = sorted_timers(snap, "t"), windows = sorted_timers(snap, "w"), fired = fired }
end

local function job_dir(dir)
  local p = io.popen("ls -A " .. run.quote(dir .. "/chk"))
  local name = p:read("l")
  p:close()
  return dir .. "/chk/" .. name
end

-- The newest retained checkpoint of the job that ran in dir.
local function newest(dir)
  local p = io.popen("ls -A " .. run.quote(job_dir(dir)))
  local best
  for name in p:lines() do
    local n = tonumber(name:match("^chk%-(%d+)$"))
    best = n and math.max(best or n, n) or best
  end
  p:close()
  return job_dir(dir) .. "/chk-" .. best
end

describe("timers in RocksDB", function()
  after_each(function() run.cleanup() end)

  it("are in the incremental checkpoints' files and restore anywhere as a clean run ends", function()
    local dir = run.tmpdir()
    -- the reference: never stopped, heap backend
    local reference = make_job { dir = dir .. "/ref", backend = { type = "heap" } }
    local want = contents(reference:run { savepoint = dir .. "/ref-sp" }.savepoint)
    assert.is_true(#want.timers > 0 and #want.windows > 0 and #want.fired > 0)

    -- stopped after checkpoint 3 (phases 1 and 2 in it), timers in RocksDB
    local stopped = make_job { dir = dir .. "/a", backend = rocksdb(dir .. "/a"), stop_at = 4 }
    assert.has_error(function() stopped:run() end)
    local chk = job_dir(dir .. "/a") .. "/chk-3"
    local info = core.checkpoint_info(chk)
    for _, st in ipairs(info.subtasks) do
      if st.uid == "t" or st.uid == "w" then
        assert.equal("native", st.keyed)
      end
    end
    -- the checkpoint holds the timers of the same moment of a heap run
    local at3 = make_job { dir = dir .. "/b", backend = { type = "heap" }, last = 2 }
    local then_ = contents(at3:run { savepoint = dir .. "/b-sp" }.savepoint)
    local got = contents(chk)
    assert.is_true(#got.timers > 0)
    assert.same(then_.timers, got.timers)
    assert.same(then_.windows, got.windows)
    assert.same(then_.fired, got.fired)

    -- restored: same parallelism (adopted), rescaled (copied), on heap,
    -- and on RocksDB with the timers in memory
    local cases = {
      { parallelism = 1, backend = rocksdb(dir .. "/r1") },
      { parallelism = 2, backend = rocksdb(dir .. "/r2") },
      { parallelism = 3, backend = { type = "heap" } },
      { parallelism = 2, backend = rocksdb(dir .. "/r4", "heap") },
    }
    for n, case in ipairs(cases) do
      local again = make_job { dir = dir .. "/run" .. n, backend = case.backend,
                               parallelism = case.parallelism, restore = chk }
      local result = again:run { savepoint = dir .. "/sp" .. n }
      local what = ("restored at parallelism %d on %s timers %s"):format(case.parallelism,
        case.backend.type, case.backend.timers or "-")
      local ended = contents(result.savepoint)
      assert.same(want.fired, ended.fired, what)
      assert.same(want.timers, ended.timers, what)
      assert.same(want.windows, ended.windows, what)
    end
  end)

  it("moves to memory and back through checkpoints of either kind", function()
    local dir = run.tmpdir()
    -- timers in memory beside RocksDB: they go beside the native files
    local stopped = make_job { dir = dir .. "/a", backend = rocksdb(dir .. "/a", "heap"),
                               stop_at = 3 }
    assert.has_error(function() stopped:run() end)
    local chk = job_dir(dir .. "/a") .. "/chk-2"
    local reference = make_job { dir = dir .. "/ref", backend = { type = "heap" } }
    local want = contents(reference:run { savepoint = dir .. "/ref-sp" }.savepoint)
    -- into RocksDB timers, stopped again, then back to memory
    local middle = make_job { dir = dir .. "/b", backend = rocksdb(dir .. "/b"), restore = chk,
                              stop_at = 5 }
    assert.has_error(function() middle:run() end)
    local last = make_job { dir = dir .. "/c", backend = rocksdb(dir .. "/c", "heap"),
                            parallelism = 2, restore = newest(dir .. "/b") }
    local ended = contents(last:run { savepoint = dir .. "/sp" }.savepoint)
    assert.same(want, ended)
  end)

  it("refuses a state whose name is kept for timers", function()
    local h = eddy.harness { backend = "rocksdb", key_by = "k", process = {
      process = function(ctx) ctx:value_state("_timer_state/event_user-timers"):update(1) end,
    } }
    local ok, err = pcall(h.push, h, { k = 1 })
    assert.is_false(ok)
    assert.matches("names starting with '_timer_state/' are kept for timers", err, 1, true)
  end)
end)
