-- Incremental checkpoint benchmark (RocksDB): 1,000,000 keys with ~100-byte
-- values, then 1% of them (10,000 keys, spread over the key space) changed;
-- what the checkpoint after the change writes and how long it takes, with
-- incremental checkpoints and with full ones, on the same state.
--   lua5.4 scripts/bench/incremental.lua [runs [keys]]
-- Reports medians and the ratio of the incremental checkpoint's bytes to the
-- full one's (target <= 0.1).

local eddy = require "eddy"
local core = require "eddy.core"

local runs = tonumber(arg and arg[1]) or 3
local keys = tonumber(arg and arg[2]) or 1000000
local changed = keys // 100

local function quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function value_of(i, version)
  local x = (i * 2654435761 + version) % 4294967296
  return ("user-%07d|%08x|%08x|"):format(i, x, x ~ 0x5bd1e995) .. ("%08x"):format(x * 31 % 4294967296):rep(9)
end

-- The newest completed checkpoint id under dir.
local function newest(dir)
  local id = 0
  for _, c in ipairs(core.checkpoints_list(dir)) do
    if c.state == "completed" and c.id > id then
      id = c.id
    end
  end
  return id
end

-- Whether the newest QUIET completed checkpoints reference the same shared
-- files: RocksDB's compactions after the fill (which run in the background
-- for seconds, started by the flush of the first checkpoint after it) are
-- over and uploaded, so what comes next is the change's own cost.
local QUIET = 5

local function settled(dir)
  local done = {}
  for _, c in ipairs(core.checkpoints_list(dir)) do
    if c.state == "completed" then
      done[#done + 1] = c
    end
  end
  table.sort(done, function(a, b) return a.id < b.id end)
  if #done < QUIET then
    return false
  end
  local function names(c)
    local list = {}
    for i, f in ipairs(core.checkpoint_info(c.path).shared) do
      list[i] = f.name
    end
    table.sort(list)
    return table.concat(list, "\n")
  end
  local newest = names(done[#done])
  for i = #done - QUIET + 1, #done - 1 do
    if names(done[i]) ~= newest then
      return false
    end
  end
  return true
end

-- Fills `keys` keys, waits for two more completed checkpoints (the second
-- surely began after the fill) and, with incremental checkpoints, for
-- RocksDB's compactions to be uploaded, changes 1% of the keys, waits for two more,
-- then stops the job with an error (its checkpoints stay). Returns the
-- completed checkpoint holding the fill, the one holding the change, and
-- what every checkpoint completed since the change began wrote together
-- (with incremental checkpoints the change may be split between two).
local function measure(work, incremental)
  local dir = work .. "/chk"
  local job = eddy.job {
    name = "bench-incremental",
    state_backend = { type = "rocksdb", dir = work .. "/rocksdb", incremental = incremental },
    checkpoint = { interval = "1s", dir = dir, retained = 6, externalized = "retain_on_cancellation" },
    restart = { strategy = "none" },
  }
  local n, phase, waiting_from, marks = 0, "fill", nil, {}
  job:source {
    name = "keys",
    next = function()
      if phase == "fill" or phase == "change" then
        n = n + 1
        local last = phase == "fill" and keys or changed
        if n > last then
          phase, waiting_from, n = phase .. " done", newest(dir), 0
          return false
        end
        -- the changed keys: every 100th one
        return phase == "fill" and { k = n, v = value_of(n, 0) } or { k = n * 100, v = value_of(n * 100, 1) }
      end
      local id = newest(dir)
      if id < waiting_from + 2 or (phase == "fill done" and incremental and id < waiting_from + 60
                                   and not settled(dir)) then
        return false -- looked at again in 10 ms
      end
      marks[#marks + 1] = id
      if phase == "fill done" then
        phase = "change"
        marks.change_from = id
        return false
      end
      error("bench: measured", 0)
    end,
  }
    :uid("keys")
    :key_by("k")
    :process("state", { process = function(ctx, r) ctx:value_state("v"):update(r.v) end })
  local ok, err = pcall(job.run, job)
  assert(not ok and tostring(err):find("bench: measured", 1, true), err)
  local by_id, since_change = {}, { bytes = 0, duration_ms = 0 }
  for _, c in ipairs(job:checkpoints()) do
    by_id[c.id] = c
    if c.status == "completed" and c.id > marks.change_from and c.id <= marks[2] then
      since_change.bytes = since_change.bytes + c.bytes
      since_change.duration_ms = math.max(since_change.duration_ms, c.duration_ms)
    end
  end
  return by_id[marks[1]], by_id[marks[2]], since_change
end

local function median(t)
  local s = { table.unpack(t) }
  table.sort(s)
  local k = #s
  return k % 2 == 1 and s[(k + 1) // 2] or (s[k // 2] + s[k // 2 + 1]) / 2
end

local r = { inc_bytes = {}, inc_ms = {}, full_bytes = {}, full_ms = {} }
for run = 1, runs do
  local work = io.popen("mktemp -d"):read("l")
  local first, _, inc = measure(work .. "/inc", true)
  local _, full = measure(work .. "/full", false)
  os.execute("rm -rf " .. quote(work))
  r.inc_bytes[run], r.inc_ms[run] = inc.bytes, inc.duration_ms
  r.full_bytes[run], r.full_ms[run] = full.bytes, full.duration_ms
  io.write(("  run %d: after 1%% changed, incremental %.2f MB (longest checkpoint %.0f ms), full %.2f MB in %.0f ms "
    .. "(state %.2f MB in RocksDB's files)\n"):format(run, inc.bytes / 1e6, inc.duration_ms,
    full.bytes / 1e6, full.duration_ms, first.state_size / 1e6))
end
local ib, fb = median(r.inc_bytes), median(r.full_bytes)
io.write(("incremental checkpoint (rocksdb, %d keys, ~100-byte values, 1%% changed), medians of %d runs:\n")
  :format(keys, runs))
io.write(("  incremental %.2f MB in %.0f ms; full %.2f MB in %.0f ms; bytes ratio %.3f (target <= 0.1)\n")
  :format(ib / 1e6, median(r.inc_ms), fb / 1e6, median(r.full_ms), ib / fb))
