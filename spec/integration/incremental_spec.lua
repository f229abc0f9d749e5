-- Incremental checkpoints on RocksDB (SEMANTICS.md section 10), end to
-- end: a job loads N keys, then updates 1% of them between checkpoints.
-- Each later checkpoint uploads only the SST files the one before did not
-- have; retention deletes exactly the shared files no retained checkpoint
-- references; every retained checkpoint restores to the right state, at
-- the same parallelism and at another one, and reads in eddy inspect; a
-- damaged SST file makes a restart fall back to the checkpoint before;
-- savepoints stay canonical.
--
-- The job runs on the manual clock, so its checkpoints fall between the
-- phases of its input at the same places every run: phase 0 (the load) at
-- time 0, phase p at p * 1000 + 500, checkpoint n at n * 1000 (holding
-- phases 0 .. n-1).
--
-- How much a checkpoint uploads depends on RocksDB's compactions as well:
-- one that merges level-0 files into level 1 rewrites the level-1 files
-- whose key ranges they overlap. Rows sort by key group first, so the
-- load goes in key-group order with small memtables and SST files (every
-- file covers a few key groups), and each phase updates 1% of the keys
-- within two key groups: compactions then rewrite a few small files, as
-- they would in a larger state (100,000 keys: the full checkpoint about
-- 2 MB, the later ones 1 to 3% of it). Updates spread over every key group
-- would rewrite every level-1 file at each such compaction: a full upload
-- every few checkpoints, in Flink as here.

local eddy = require "eddy"
local core = require "eddy.core"
local run = require "run"

-- the sanitized suite runs everything several times slower
local N = tonumber(os.getenv("EDDY_INCREMENTAL_KEYS") or "")
  or os.getenv("ASAN_OPTIONS") and 20000 or 100000
local PHASES = 5
local MAXP = 128

-- the keys of each key group, in key order
local by_group = {}
for k = 1, N do
  local g = eddy.key_group(k, MAXP)
  local list = by_group[g]
  if not list then
    list = {}
    by_group[g] = list
  end
  list[#list + 1] = k
end
local load = {}
for g = 0, MAXP - 1 do
  for _, k in ipairs(by_group[g] or {}) do
    load[#load + 1] = k
  end
end
-- phase p updates N / 100 keys: those of key group 37p mod 128, then the
-- next key group's
local updates = {}
for p = 1, PHASES + 1 do
  local u, g = {}, (p * 37) % MAXP
  while #u < N // 100 do
    for _, k in ipairs(by_group[g] or {}) do
      if #u < N // 100 then
        u[#u + 1] = k
      end
    end
    g = (g + 1) % MAXP
  end
  updates[p] = u
end

-- What the state holds after phases 0 .. last: key -> the last phase that
-- wrote it.
local function model(last)
  local m = {}
  for _, k in ipairs(load) do
    m[k] = 0
  end
  for p = 1, last do
    for _, k in ipairs(updates[p]) do
      m[k] = p
    end
  end
  return m
end

local function files_in(dir)
  local found = {}
  local p = io.popen("ls -A " .. run.quote(dir) .. " 2>/dev/null")
  for name in p:lines() do
    found[#found + 1] = name
  end
  p:close()
  table.sort(found)
  return found
end

-- The shared files the retained checkpoints of a job folder reference,
-- sorted, and the checkpoints' folders.
local function referenced(job_dir)
  local names, seen, chks = {}, {}, {}
  for _, name in ipairs(files_in(job_dir)) do
    if name:match("^chk%-%d+$") then
      chks[#chks + 1] = name
      for _, f in ipairs(core.checkpoint_info(job_dir .. "/" .. name).shared) do
        if not seen[f.name] then
          seen[f.name] = true
          names[#names + 1] = f.name
        end
      end
    end
  end
  table.sort(names)
  return names, chks
end

-- The job: opts.dir (checkpoints), opts.parallelism, opts.phases (the
-- last phase it reads), opts.restore, opts.on_phase(p) (called by the
-- keyed function at the first record of phase p, when checkpoint p has
-- completed), opts.restart, opts.heap (the heap backend instead).
local function make_job(opts)
  local job = eddy.job {
    name = "incremental", parallelism = opts.parallelism or 1, max_parallelism = MAXP,
    processing_time = "manual",
    state_backend = opts.heap and { type = "heap" }
      or { type = "rocksdb", incremental = true, dir = opts.dir .. "/rocksdb",
           options = { write_buffer_size = "64kb", target_file_size_base = "16kb" } },
    checkpoint = { interval = 1000, dir = opts.dir .. "/chk", retained = 2,
                   externalized = "retain_on_cancellation" },
    restart = opts.restart or { strategy = "none" },
    restore = opts.restore,
  }
  local phase, i = 0, 0
  job:source {
    arrival_time = "at",
    next = function()
      i = i + 1
      local list = phase == 0 and load or updates[phase]
      if i > #list then
        phase, i = phase + 1, 1
        if phase > opts.phases then
          return nil
        end
        list = updates[phase]
      end
      return { k = list[i], p = phase, at = phase == 0 and 0 or phase * 1000 + 500 }
    end,
    snapshot = function() return { phase, i } end,
    restore = function(_, pos) phase, i = pos[1], pos[2] end,
  }:uid("src")
    :key_by("k")
    :process("last", {
      process = function(ctx, r)
        local seen = ctx:value_state("seen")
        if opts.on_phase and r.p > 0 and not opts.called then
          opts.called = {}
        end
        if opts.on_phase and r.p > 0 and not opts.called[r.p] then
          opts.called[r.p] = true
          opts.on_phase(r.p)
        end
        -- the phase, and 32 bytes that compress as little as real data
        seen:update { r.p, ("%016x"):format(r.k * 0x9E3779B97F4A7C15 + r.p):rep(2) }
      end,
    })
  return job
end

-- The keyed state of snapshot path, as key -> value.
local function state_of(path)
  local snap = eddy.savepoint.load(path)
  local got, n = {}, 0
  for key, _, value in snap:entries("last", "seen") do
    got[key] = value[1]
    n = n + 1
  end
  return got, n
end

local function assert_state(path, want, what)
  local got, n = state_of(path)
  local wrong = 0
  for k, v in pairs(want) do
    if got[k] ~= v then
      wrong = wrong + 1
    end
  end
  assert.equal(N, n, what .. ": keys")
  assert.equal(0, wrong, what .. ": keys with the wrong value")
end

describe("incremental RocksDB checkpoints", function()
  after_each(function() run.cleanup() end)

  it("upload what changed, retain exactly what is referenced, restore any retained one", function()
    local dir = run.tmpdir()
    local observed = {}
    local job = make_job {
      dir = dir, phases = PHASES + 1,
      on_phase = function(p)
        -- checkpoint p completed; retention ran
        local jobs = files_in(dir .. "/chk")
        local job_dir = dir .. "/chk/" .. jobs[1]
        local names, chks = referenced(job_dir)
        observed[p] = { shared = files_in(job_dir .. "/shared"), referenced = names, chks = chks }
        if p == PHASES + 1 then
          error("stopping here") -- failed: its checkpoints are retained
        end
      end,
    }
    local ok, err = pcall(job.run, job)
    assert.is_false(ok)
    assert.matches("stopping here", err)

    -- 1 full checkpoint, then 5 that each add far fewer bytes
    local history = job:checkpoints()
    assert.equal(PHASES + 1, #history)
    local full = history[1].bytes
    assert.is_true(full > N * 16, "a full checkpoint of " .. full .. " bytes")
    for i = 2, PHASES + 1 do
      local c = history[i]
      assert.equal("completed", c.status)
      assert.is_true(c.bytes < full / 10,
        ("checkpoint %d wrote %d bytes; the full one %d"):format(c.id, c.bytes, full))
      -- but stands for the whole state
      assert.is_true(c.state_size > full * 0.9)
    end

    -- after every completion, shared/ holds exactly what the retained
    -- checkpoints reference
    for p = 2, PHASES + 1 do
      local o = observed[p]
      assert.equal(math.min(p, 2), #o.chks, "retained at " .. p)
      assert.same(o.referenced, o.shared, "shared files after checkpoint " .. p)
    end

    -- the retained ones (5 and 6) restore to the state they were taken at
    local job_dir = dir .. "/chk/" .. files_in(dir .. "/chk")[1]
    for _, st in ipairs(core.checkpoint_info(job_dir .. "/chk-" .. PHASES).subtasks) do
      assert.equal(st.uid == "last" and "native" or nil, st.keyed)
    end
    for _, id in ipairs { PHASES, PHASES + 1 } do
      assert_state(job_dir .. "/chk-" .. id, model(id - 1), "chk-" .. id)
    end

    -- restored at parallelism 2 (each subtask opens the old files and
    -- deletes the other's key groups), at 1 (the files become the
    -- database as they are), and on the
    -- heap backend at 3, it goes on and stops with a canonical savepoint
    local from = job_dir .. "/chk-" .. PHASES
    for _, p in ipairs { 2, 1, 3 } do
      local again = make_job { dir = dir .. "/p" .. p, parallelism = p, phases = PHASES + 1,
                               restore = from, heap = p == 3 }
      local result = again:run { savepoint = dir .. "/savepoints" }
      assert.truthy(result.savepoint)
      assert_state(result.savepoint, model(PHASES + 1), "restored at parallelism " .. p)
      local sp = core.checkpoint_info(result.savepoint)
      assert.equal(0, #sp.shared) -- savepoints are self-contained
      for _, st in ipairs(sp.subtasks) do
        assert.is_true(st.keyed == nil or st.keyed == "canonical")
      end
      -- another job's folder: its first checkpoint uploads everything
      assert.is_true(again:checkpoints()[1].bytes > full / 2 or p == 3)
    end

    -- eddy inspect reads it as it reads any checkpoint; eddy checkpoints
    -- --verify checks the shared files too, and names a damaged one
    local out, cerr, code = run.eddy("inspect", job_dir .. "/chk-" .. PHASES, "--key",
                                     tostring(updates[1][1]))
    assert.equal(0, code, cerr)
    assert.matches("last +seen +value +" .. updates[1][1] .. " +%- +{1, \"", out)
    out, cerr, code = run.eddy("checkpoints", "--verify", job_dir)
    assert.equal(0, code, cerr)
    assert.matches("chk%-" .. PHASES .. " +checkpoint +completed", out)
    local shared = files_in(job_dir .. "/shared")
    local fh = assert(io.open(job_dir .. "/shared/" .. shared[#shared], "ab"))
    fh:write("x")
    fh:close()
    out = run.eddy("checkpoints", job_dir)
    assert.matches("damaged", out)
    assert.matches("shared file " .. shared[#shared]:gsub("%-", "%%-") .. ": size mismatch", out)
  end)

  it("falls back past a damaged SST file of the latest checkpoint after a failure", function()
    local dir = run.tmpdir()
    local injected = false
    local job = make_job {
      dir = dir, phases = PHASES + 1,
      restart = { strategy = "fixed_delay", attempts = 1, delay = 1 },
      on_phase = function(p)
        if p == PHASES + 1 and not injected then
          injected = true
          -- damage a file only the latest checkpoint references
          local job_dir = dir .. "/chk/" .. files_in(dir .. "/chk")[1]
          local mine = core.checkpoint_info(job_dir .. "/chk-" .. p).shared
          local before = {}
          for _, f in ipairs(core.checkpoint_info(job_dir .. "/chk-" .. (p - 1)).shared) do
            before[f.name] = true
          end
          local victim
          for _, f in ipairs(mine) do
            if not before[f.name] then
              victim = job_dir .. "/shared/" .. f.name
            end
          end
          assert(victim, "the latest checkpoint uploaded nothing")
          local fh = assert(io.open(victim, "r+b"))
          fh:seek("set", 100)
          local b = fh:read(1)
          fh:seek("set", 100)
          fh:write(string.char(b:byte() ~ 0x5a))
          fh:close()
          error("injected failure")
        end
      end,
    }
    local ok, result = pcall(job.run, job, { savepoint = dir .. "/savepoints" })
    assert.is_true(ok, tostring(result))
    assert_state(result.savepoint, model(PHASES + 1), "after the fallback")
    -- the checkpoint after the restart builds on the files it restored
    -- (the job's own folder): it uploads only the newest
    local history = job:checkpoints()
    local full = history[1].bytes
    local after
    for _, c in ipairs(history) do
      if c.id > PHASES + 1 and c.status == "completed" and c.kind == "checkpoint" then
        after = after or c
      end
    end
    assert.truthy(after)
    assert.is_true(after.bytes < full / 10, ("%d bytes after the restart"):format(after.bytes))
  end)
end)
