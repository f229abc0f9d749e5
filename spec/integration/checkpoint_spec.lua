-- Checkpoints end to end: barriers through a parallel job with a union,
-- recovery from failures with exactly-once output through a transactional
-- sink, at-least-once, damaged checkpoints, retention, tolerable failures
-- and `eddy run --resume`. Jobs run in bin/eddy, as users run them.

local run = require "run"

-- A job at parallelism 3: a generator and a collection, unioned, through
-- a map that fails once at each record number in FAIL (a list), a keyed
-- count per k, and a transactional file sink. Everything else comes from
-- the environment, so one script serves every case. Records of one key
-- reach the count through several channels, in an order that depends on
-- timing, but the counts it emits for a key are 1, 2, ... n whatever the
-- order: lost records show as missing counts, repeated ones as extra.
local JOB = [[
local out_dir, chk_dir = ...
local env = function(k, d) return os.getenv(k) or d end
local fail_at = {}
for n in env("FAIL", ""):gmatch("%-?%d+") do fail_at[tonumber(n)] = true end
local checkpoint = nil
if env("INTERVAL", "") ~= "" then
  checkpoint = {
    interval = env("INTERVAL"), dir = chk_dir, mode = env("MODE", "exactly_once"),
    unaligned = env("UNALIGNED", "") == "1", retained = tonumber(env("RETAINED", "1")),
    externalized = env("EXTERNALIZED", "retain_on_cancellation"),
  }
end
local job = eddy.job {
  name = "counts", parallelism = 3, checkpoint = checkpoint,
  restart = env("RESTART", "") == "none" and { strategy = "none" }
    or { strategy = "fixed_delay", attempts = 10, delay = "1ms" },
}
local generated = job:from_generator {
  count = tonumber(env("COUNT", "12000")), rate = tonumber(env("RATE", "")),
  fn = function(i) return { k = i % 41, i = i } end,
}
local listed = {}
for i = 1, 300 do listed[i] = { k = i % 7, i = -i } end
generated:union(job:from_collection(listed))
  :map(function(r)
    if fail_at[r.i] then
      fail_at[r.i] = nil
      error("injected failure at record " .. r.i)
    end
    return r
  end)
  :key_by("k")
  :process("count", {
    process = function(ctx, r, out)
      local n = ctx:value_state("n")
      n:update((n:value() or 0) + 1)
      out:collect { k = r.k, n = n:value() }
    end,
  })
  :to_file(out_dir)
job:run()
]]

local function script(dir)
  return run.write(dir .. "/job.lua", JOB)
end

-- Runs the job with the given environment; returns stderr and the status.
local function run_job(dir, env, extra_args)
  local parts = {}
  for k, v in pairs(env or {}) do
    parts[#parts + 1] = k .. "=" .. run.quote(v)
  end
  local cmd = ("env %s %s run %s %s %s %s"):format(table.concat(parts, " "), run.quote(run.exe),
    extra_args or "", run.quote(script(dir)), run.quote(dir .. "/out"), run.quote(dir .. "/chk"))
  local _, err, code = run.sh(cmd)
  return err, code
end

-- The committed output: every line of every visible part file, sorted.
local function committed(dir)
  local p = assert(io.popen("cat " .. run.quote(dir .. "/out") .. "/part-* 2>/dev/null | sort"))
  local text = p:read("a")
  p:close()
  return text
end

local function hidden_files(dir)
  local p = assert(io.popen("ls -A " .. run.quote(dir .. "/out") .. " | grep '^\\.' || true"))
  local text = p:read("a")
  p:close()
  return text
end

local function folders(path, pattern)
  local p = assert(io.popen("ls " .. run.quote(path) .. " 2>/dev/null"))
  local found = {}
  for name in p:lines() do
    if name:match(pattern) then
      found[#found + 1] = name
    end
  end
  p:close()
  -- chk-9 before chk-10
  table.sort(found, function(a, b)
    local x, y = tonumber(a:match("%d+")), tonumber(b:match("%d+"))
    if x and y and x ~= y then
      return x < y
    end
    return a < b
  end)
  return found
end

-- The single job folder under dir/chk.
local function job_folder(dir)
  local jobs = folders(dir .. "/chk", "^%x+$")
  assert.equal(1, #jobs, "job folders: " .. table.concat(jobs, " "))
  return dir .. "/chk/" .. jobs[1]
end

local clean_output
local function clean()
  if not clean_output then
    local dir = run.tmpdir()
    local err, code = run_job(dir, {})
    assert.equal(0, code, err)
    clean_output = committed(dir)
    assert.equal(12300, #run.lines(clean_output))
  end
  return clean_output
end

local function count_lines(text)
  local n = {}
  for line in text:gmatch("[^\n]+") do
    n[line] = (n[line] or 0) + 1
  end
  return n
end

-- The committed output is the clean run's: nothing lost, nothing twice.
local function assert_exactly_once(dir, what)
  local want, got = count_lines(clean()), count_lines(committed(dir))
  local missing, extra = {}, {}
  for line, n in pairs(want) do
    if (got[line] or 0) < n then
      missing[#missing + 1] = line
    end
  end
  for line, n in pairs(got) do
    if (want[line] or 0) < n then
      extra[#extra + 1] = line
    end
  end
  table.sort(missing)
  table.sort(extra)
  assert(#missing == 0 and #extra == 0, ("%s: %d lines missing (%s), %d too many (%s)"):format(
    what or "output", #missing, missing[1] or "", #extra, extra[1] or ""))
end

local function assert_nothing_lost(dir, what)
  local got = count_lines(committed(dir))
  local missing = {}
  for line in pairs(count_lines(clean())) do
    if not got[line] then
      missing[#missing + 1] = line
    end
  end
  table.sort(missing)
  assert(#missing == 0, ("%s: %d lines missing (%s)"):format(what or "output", #missing, missing[1] or ""))
end

describe("checkpoints", function()
  after_each(run.cleanup)

  for _, case in ipairs {
    { name = "aligned", env = {} },
    { name = "unaligned", env = { UNALIGNED = "1" } },
    { name = "aligned, on rocksdb", env = {}, rocksdb = true },
  } do
    it(("recover exactly once (%s) from failures at several records"):format(case.name), function()
      local dir = run.tmpdir()
      local env = { INTERVAL = "10ms", FAIL = "2500 6100 9700 11990", RATE = "60000" }
      for k, v in pairs(case.env) do
        env[k] = v
      end
      local err, code = run_job(dir, env, case.rocksdb and ("-D state.backend=rocksdb "
        .. "-D state.backend.rocksdb.localdir=" .. run.quote(dir .. "/rocksdb")))
      assert.equal(0, code, err)
      local _, failures = err:gsub("injected failure at record", "")
      assert.equal(4, failures, err)
      assert.truthy(err:find("restarting from " .. dir:gsub("%p", "%%%0") .. "/chk/%x+/chk%-%d+"), err)
      assert_exactly_once(dir)
      assert.equal("", hidden_files(dir))
    end)
  end

  it("in at-least-once mode may repeat records but loses none", function()
    local dir = run.tmpdir()
    local err, code = run_job(dir, { INTERVAL = "10ms", MODE = "at_least_once", FAIL = "4000 9000",
                                     RATE = "60000" })
    assert.equal(0, code, err)
    assert.truthy(err:find("restarting from " .. dir, 1, true), err)
    assert_nothing_lost(dir)
  end)

  it("are laid out on disk with _metadata and keep exactly `retained`", function()
    local dir = run.tmpdir()
    local err, code = run_job(dir, { INTERVAL = "10ms", RETAINED = "3", RATE = "40000",
                                     FAIL = "11000", RESTART = "none" })
    assert.equal(1, code)
    assert.truthy(err:find("injected failure at record 11000", 1, true), err)
    local job = job_folder(dir)
    local kept = folders(job, "^chk%-%d+$")
    assert.equal(3, #kept, table.concat(kept, " "))
    assert.same({}, folders(job, "inprogress"))
    local meta = run.read(job .. "/" .. kept[3] .. "/_metadata")
    assert.truthy(meta:find('"format": *1'), meta)
    assert.truthy(meta:find('"name": *"counts"'), meta)
    assert.truthy(meta:find('"checksum"'), meta)
    assert.truthy(meta:find('"compression": *"zstd"'), meta)
    -- the failure kept them (retain_on_cancellation); without externalized
    -- checkpoints a failed job leaves nothing
    dir = run.tmpdir()
    err, code = run_job(dir, { INTERVAL = "10ms", RATE = "40000", FAIL = "11000", RESTART = "none",
                               EXTERNALIZED = "none" })
    assert.equal(1, code, err)
    assert.same({}, folders(dir .. "/chk", "."))
  end)

  it("are discarded when the job finishes", function()
    local dir = run.tmpdir()
    local err, code = run_job(dir, { INTERVAL = "10ms", RATE = "60000" })
    assert.equal(0, code, err)
    assert.same({}, folders(dir .. "/chk", "."))
  end)

  it("resume after a failure with --resume, ids going on from the restored one", function()
    local dir = run.tmpdir()
    local err, code = run_job(dir, { INTERVAL = "10ms", RETAINED = "2", RATE = "40000",
                                     FAIL = "9000", RESTART = "none" })
    assert.equal(1, code, err)
    local job = job_folder(dir)
    local kept = folders(job, "^chk%-%d+$")
    local last = tonumber(kept[#kept]:match("%d+"))
    err, code = run_job(dir, { INTERVAL = "10ms", RATE = "40000", EXTERNALIZED = "retain_on_cancellation",
                               FAIL = "11500", RESTART = "none" }, "--resume " .. run.quote(dir .. "/chk"))
    assert.equal(1, code, err)
    assert.truthy(err:find("resuming counts from " .. job .. "/chk-" .. last, 1, true), err)
    -- the same folder, newer ids
    local after = folders(job, "^chk%-%d+$")
    assert.truthy(tonumber(after[#after]:match("%d+")) > last, table.concat(after, " "))
    err, code = run_job(dir, { INTERVAL = "10ms", RATE = "40000" }, "--resume")
    assert.equal(0, code, err)
    assert_exactly_once(dir)
  end)

  -- The damaged checkpoint's output was committed when it completed, so
  -- going back to the one before replays what came in between: a fallback
  -- loses nothing, but may repeat output, as it does in Flink.
  it("fall back to the previous checkpoint when the latest is damaged", function()
    for _, damage in ipairs {
      { what = "a flipped byte", how = function(chk)
        local name = folders(chk, "%.keyed$")[1]
        local f = assert(io.open(chk .. "/" .. name, "r+b"))
        f:seek("set", 20)
        local b = f:read(1)
        f:seek("set", 20)
        f:write(string.char((b:byte() + 1) % 256))
        f:close()
      end, says = "checksum" },
      { what = "a missing file", how = function(chk)
        os.remove(chk .. "/" .. folders(chk, "%.operators$")[1])
      end, says = "missing" },
      { what = "a truncated _metadata", how = function(chk)
        local meta = run.read(chk .. "/_metadata")
        run.write(chk .. "/_metadata", meta:sub(1, #meta // 2))
      end, says = "_metadata" },
    } do
      local dir = run.tmpdir()
      local err, code = run_job(dir, { INTERVAL = "10ms", RETAINED = "2", RATE = "40000",
                                       FAIL = "10000", RESTART = "none" })
      assert.equal(1, code, err)
      local job = job_folder(dir)
      local kept = folders(job, "^chk%-%d+$")
      assert.equal(2, #kept)
      damage.how(job .. "/" .. kept[2])
      -- without restarts: a reused checkpoint id would fail the job
      err, code = run_job(dir, { INTERVAL = "10ms", RATE = "40000", RESTART = "none" }, "--resume")
      assert.equal(0, code, err)
      assert.truthy(err:find(job .. "/" .. kept[2] .. " is damaged", 1, true), damage.what .. ": " .. err)
      assert.truthy(err:find("falling back to " .. kept[1], 1, true), damage.what .. ": " .. err)
      assert.truthy(err:find(damage.says, 1, true), damage.what .. ": " .. err)
      assert.truthy(err:find("resuming counts from " .. job .. "/" .. kept[1], 1, true), err)
      assert_nothing_lost(dir, damage.what)
    end
  end)

  it("count consecutive failures against tolerable_failures", function()
    local dir = run.tmpdir()
    -- a source whose snapshot fails for the checkpoint ids listed in
    -- BAD: each failure is counted; a success resets the count
    local path = run.write(dir .. "/tolerate.lua", [[
      local bad = {}
      for n in os.getenv("BAD"):gmatch("%d+") do bad[tonumber(n)] = true end
      local job = eddy.job { name = "tolerate",
        checkpoint = { interval = "10ms", tolerable_failures = 2, dir = ... },
        restart = { strategy = "none" } }
      local n, taken, ready = 0, 0, false
      job:source {
        -- every other call has nothing yet, and the source looks again
        -- 10 ms later: a checkpoint between most records
        next = function()
          ready = not ready
          if not ready then return false end
          n = n + 1
          return n <= 60 and n or nil
        end,
        snapshot = function()
          taken = taken + 1
          if bad[taken] then error("cannot snapshot " .. taken) end
          return n
        end,
        restore = function(_, pos) n = pos end,
      }:sink(function() end)
      local result = job:run()
      local failed = 0
      for _, c in ipairs(result.checkpoints) do
        if c.status == "failed" and c.failure:find("cannot snapshot") then failed = failed + 1 end
      end
      print(#result.checkpoints, failed)
    ]])
    local out, err, code = run.sh(("BAD='2 3 5 6' %s run %s %s"):format(run.quote(run.exe),
      run.quote(path), run.quote(dir .. "/chk")))
    assert.equal(0, code, err)
    assert.matches("^%d+\t4\n$", out)
    out, err, code = run.sh(("BAD='2 3 4' %s run %s %s"):format(run.quote(run.exe),
      run.quote(path), run.quote(dir .. "/chk")))
    assert.equal(1, code, out)
    assert.truthy(err:find("Exceeded checkpoint tolerable failure threshold (2)", 1, true), err)
    assert.truthy(err:find("cannot snapshot 4", 1, true), err)
  end)

  it("go on counting failed checkpoints across a restart, as Flink does", function()
    local dir = run.tmpdir()
    -- snapshots 2 and 3 fail; between them the source fails the job once
    local path = run.write(dir .. "/across.lua", [[
      local job = eddy.job { name = "across",
        checkpoint = { interval = "10ms", tolerable_failures = 1, dir = ... },
        restart = { strategy = "fixed_delay", attempts = 1, delay = "1ms" } }
      local n, ready, snapshots, failed = 0, false, 0, false
      job:source {
        next = function()
          if snapshots == 2 and not failed then failed = true; error("the source fails") end
          ready = not ready
          if not ready then return false end
          n = n + 1
          return n <= 100 and n or nil
        end,
        snapshot = function()
          snapshots = snapshots + 1
          if snapshots == 2 or snapshots == 3 then error("cannot snapshot " .. snapshots) end
          return n
        end,
        restore = function(_, pos) n = pos end,
      }:sink(function() end)
      job:run()
    ]])
    local _, err, code = run.sh(("%s run %s %s"):format(run.quote(run.exe), run.quote(path),
      run.quote(dir .. "/chk")))
    assert.equal(1, code, err)
    assert.truthy(err:find("the source fails", 1, true), err)
    assert.truthy(err:find("Exceeded checkpoint tolerable failure threshold (1)", 1, true), err)
    assert.truthy(err:find("cannot snapshot 3", 1, true), err)
  end)

  it("go unaligned once aligned_timeout has passed, and recover exactly once", function()
    local dir = run.tmpdir()
    -- a fast and a slow source into a slow keyed count: the barrier of the
    -- slow source waits behind few records, the fast one's behind many
    local path = run.write(dir .. "/timeout.lua", [[
      local out_dir, chk_dir, checkpointing, aligned_timeout = ...
      local job = eddy.job {
        name = "aligned-timeout", parallelism = 2,
        checkpoint = checkpointing == "yes" and { interval = "30ms", dir = chk_dir, unaligned = true,
                                                  aligned_timeout = aligned_timeout } or nil,
        restart = { strategy = "fixed_delay", attempts = 3, delay = "1ms" },
      }
      local fail_at = { [3000] = checkpointing == "yes" }
      local fast = job:from_generator { count = 4000, fn = function(i) return { k = i % 13, i = i } end }
      local slow = job:from_generator { count = 400, rate = 2000,
                                        fn = function(i) return { k = i % 13, i = -i } end }
      fast:union(slow)
        :key_by("k")
        :process("count", {
          process = function(ctx, r, out)
            if fail_at[r.i] then fail_at[r.i] = nil; error("injected at " .. r.i) end
            local t = os.clock() + 0.0001
            while os.clock() < t do end
            local n = ctx:value_state("n")
            n:update((n:value() or 0) + 1)
            out:collect { k = r.k, n = n:value() }
          end,
        })
        :to_file(out_dir)
      job:run()
    ]])
    local function go(out, checkpointing, aligned_timeout)
      local _, err, code = run.sh(("%s run --trace %s %s %s %s %s"):format(run.quote(run.exe),
        run.quote(path), run.quote(dir .. "/" .. out), run.quote(dir .. "/chk"), checkpointing,
        aligned_timeout or "0ms"))
      assert.equal(0, code, err)
      return err
    end
    local function sorted(out)
      local p = assert(io.popen("cat " .. run.quote(dir .. "/" .. out) .. "/part-* | sort"))
      local text = p:read("a")
      p:close()
      return text
    end
    go("clean", "no")
    -- aligning takes longer than 10 ms here: subtasks go unaligned (at a
    -- barrier, or between batches while they wait) and store channel state
    local err = go("out", "yes", "10ms")
    assert.truthy(err:find("unaligned: barrier sent ahead", 1, true), err)
    assert.truthy(err:find("channel state recorded %([1-9]%d* bytes%)"), err)
    assert.truthy(err:find("injected at 3000", 1, true), err)
    assert(sorted("clean") == sorted("out"), "the output differs from the run without checkpoints")
    -- with an hour to align, every checkpoint aligns
    err = go("out2", "yes", "1h")
    assert.is_nil(err:find("unaligned", 1, true))
    assert.truthy(err:find(": aligned\n"), err)
    assert(sorted("clean") == sorted("out2"), "the output differs from the run without checkpoints")
  end)

  it("restore from a checkpoint with -s, refusing state of a removed operator", function()
    local dir = run.tmpdir()
    local err, code = run_job(dir, { INTERVAL = "10ms", RATE = "40000", FAIL = "10000", RESTART = "none" })
    assert.equal(1, code, err)
    local job = job_folder(dir)
    local chk = job .. "/" .. folders(job, "^chk%-%d+$")[1]
    err, code = run_job(dir, { INTERVAL = "10ms", RATE = "40000" }, "-s " .. run.quote(chk))
    assert.equal(0, code, err)
    assert_exactly_once(dir)
    -- the same checkpoint into a job without the keyed count
    local path = run.write(dir .. "/other.lua", [[
      local job = eddy.job { name = "counts", parallelism = 3 }
      job:from_generator { count = 10 }:union(job:from_collection { 1 }):map(function(x) return x end)
        :sink(function() end)
      job:run()
    ]])
    local _, e, status = run.sh(("%s run -s %s %s"):format(run.quote(run.exe), run.quote(chk),
      run.quote(path)))
    assert.equal(1, status)
    assert.truthy(e:find("holds state of operator", 1, true), e)
    assert.truthy(e:find("allow_non_restored_state", 1, true), e)
    _, e, status = run.sh(("%s run -s %s --allow-non-restored-state %s"):format(run.quote(run.exe),
      run.quote(chk), run.quote(path)))
    assert.equal(0, status, e)
  end)

  it("take a final checkpoint once everything finished, so a late failure repeats nothing", function()
    local dir = run.tmpdir()
    -- close fails once, after the input ended and the output was committed
    local path = run.write(dir .. "/late.lua", [[
      local out_dir, chk_dir, marker = ...
      local job = eddy.job { name = "late", checkpoint = { interval = "20ms", dir = chk_dir },
                             restart = { strategy = "fixed_delay", attempts = 2, delay = "1ms" } }
      job:from_generator { count = 2000, rate = 20000 }
        :key_by(function(i) return i % 5 end)
        :process("p", {
          process = function(ctx, i, out) out(i) end,
          close = function()
            local f = io.open(marker)
            if not f then
              io.open(marker, "w"):close()
              error("close fails once")
            end
            f:close()
          end,
        })
        :to_file(out_dir, { format = "lines" })
      job:run()
    ]])
    local _, err, code = run.sh(("%s run --trace %s %s %s %s"):format(run.quote(run.exe), run.quote(path),
      run.quote(dir .. "/out"), run.quote(dir .. "/chk"), run.quote(dir .. "/marker")))
    assert.equal(0, code, err)
    assert.truthy(err:find("every subtask finished: the final checkpoint", 1, true), err)
    assert.truthy(err:find("close fails once", 1, true), err)
    local p = assert(io.popen("cat " .. run.quote(dir .. "/out") .. "/part-* | sort -n | uniq -c | awk '$1 != 1' | wc -l"))
    local repeated = p:read("a")
    p:close()
    assert.equal("0\n", repeated)
    assert.equal(2000, #run.lines(committed(dir)))
  end)

  it("restore processing-time timers, tell is_restored and collect exactly once", function()
    local dir = run.tmpdir()
    local path = run.write(dir .. "/restored.lua", [[
      local chk_dir = ...
      local job = eddy.job { name = "restored", checkpoint = { interval = "20ms", dir = chk_dir },
                             restart = { strategy = "fixed_delay", attempts = 1, delay = "1ms" } }
      local failed, restored_seen = false, false
      local fired = job:from_generator { count = 600, rate = 1000 }
        :map(function(v)
          if v == 300 and not failed then failed = true; error("boom") end
          return v
        end)
        :key_by(function(v) return v % 3 end)
        :process("p", {
          open = function(ctx) restored_seen = restored_seen or ctx:is_restored() end,
          process = function(ctx, v, out)
            local s = ctx:value_state("registered")
            if not s:value() then
              s:update(true)
              ctx.timers:register_processing_time(ctx.timers:current_processing_time() + 400)
            end
            out(v)
          end,
          on_timer = function(ctx, ts, out) out("timer " .. tostring(ctx:key())) end,
        })
        :collect()
      job:run()
      local values, timers, seen = fired:values(), 0, {}
      local repeated = 0
      for _, v in ipairs(values) do
        if type(v) == "string" then timers = timers + 1
        elseif seen[v] then repeated = repeated + 1
        else seen[v] = true end
      end
      print(#values, timers, repeated, restored_seen)
    ]])
    local out, err, code = run.sh(("%s run %s %s"):format(run.quote(run.exe), run.quote(path),
      run.quote(dir .. "/chk")))
    assert.equal(0, code, err)
    assert.truthy(err:find("restarting from", 1, true), err)
    assert.equal("603\t3\t0\ttrue\n", out)
  end)

  it("do not stall alignment on the barriers of a declined checkpoint", function()
    local dir = run.tmpdir()
    local path = run.write(dir .. "/declined.lua", [[
      local chk_dir = ...
      local core = require "eddy.core"
      local job = eddy.job { name = "declined", checkpoint = { interval = "200ms", dir = chk_dir,
                                                               tolerable_failures = 5 },
                             restart = { strategy = "none" } }
      local function source(name, decline_first)
        local n, ready, snapshots = 0, false, 0
        return job:source {
          name = name,
          next = function()
            ready = not ready
            if not ready then return false end
            n = n + 1
            return n <= 80 and { s = name, n = n } or nil
          end,
          snapshot = function()
            snapshots = snapshots + 1
            if decline_first and snapshots == 1 then error("declined by " .. name) end
            return n
          end,
          restore = function(_, pos) n = pos end,
        }
      end
      local last, longest = core.monotonic_ms(), 0
      source("a", false):union(source("b", true)):sink(function(r)
        if r.s == "a" then
          local now = core.monotonic_ms()
          longest = math.max(longest, now - last)
          last = now
        end
      end)
      local result = job:run()
      print(result.checkpoints[1].status, longest < 150)
    ]])
    local out, err, code = run.sh(("%s run %s %s"):format(run.quote(run.exe), run.quote(path),
      run.quote(dir .. "/chk")))
    assert.equal(0, code, err)
    assert.equal("failed\ttrue\n", out)
  end)

  it("trace every barrier event with --trace", function()
    local dir = run.tmpdir()
    local err, code = run_job(dir, { INTERVAL = "10ms", RATE = "60000" }, "--trace")
    assert.equal(0, code, err)
    for _, event in ipairs {
      "triggered at", "from_generator (1/1): barrier emitted",
      "from_collection (1/1): finished", "barrier received on input",
      "blocked until the other barriers arrive", "aligned", "snapshot taken",
      "barrier forwarded", "acknowledged (state written)", "completed (",
    } do
      assert.truthy(err:find(event, 1, true), event)
    end
  end)
end)

describe("eddy checkpoints DIR", function()
  after_each(run.cleanup)

  it("lists completed and in-progress checkpoints with id, time, size and kind", function()
    local dir = run.tmpdir()
    local err, code = run_job(dir, { INTERVAL = "10ms", RETAINED = "2", RATE = "40000",
                                     FAIL = "10000", RESTART = "none" })
    assert.equal(1, code, err)
    local job = job_folder(dir)
    local kept = folders(job, "^chk%-%d+$")
    assert(os.execute("mkdir " .. run.quote(job .. "/chk-999.inprogress")))
    local out, e, status = run.eddy("checkpoints", dir .. "/chk")
    assert.equal(0, status, e)
    local lines = run.lines(out)
    assert.matches("^JOB +ID +NAME +KIND +STATE +TIME +SIZE$", lines[1])
    local id = kept[1]:match("%d+")
    assert.matches("^%x+ +" .. id .. " +chk%-" .. id .. " +checkpoint +completed +%d%d%d%d%-%d%d%-%d%d "
      .. "%d%d:%d%d:%d%d%.%d%d%d +[%d.]+ [KMG]?i?B$", lines[2])
    assert.truthy(out:find("chk-999.inprogress", 1, true), out)
    assert.truthy(out:find("in progress", 1, true), out)
    out, e, status = run.eddy("checkpoints")
    assert.equal(2, status)
    assert.matches("needs a folder", e)
  end)
end)
