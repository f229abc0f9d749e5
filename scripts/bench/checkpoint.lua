-- Checkpoint benchmark: 1,000,000 keys with ~100-byte values in the heap
-- backend, checkpointed and restored, beside the zstd command line (-T1,
-- at the level eddy used) compressing and decompressing the same bytes.
--   lua5.4 scripts/bench/checkpoint.lua [runs [keys]]
-- Reports medians: the synchronous pause, the asynchronous part, bytes on
-- disk, restore time, and the throughputs with their ratios to zstd's.

local eddy = require "eddy"
local core = require "eddy.core"

-- `checkpoint.lua cold PATH`: the restore timing alone, in a fresh process
local cold_path = arg and arg[1] == "cold" and arg[2]
local runs = tonumber(arg and arg[1]) or 3
local keys = tonumber(arg and arg[2]) or 1000000
local LEVEL = 1 -- checkpoint.zstd_level's default

local function sh(cmd)
  local ok = os.execute(cmd)
  if not ok then
    error("failed: " .. cmd)
  end
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- ~100 bytes per value, varied enough that compression has work to do
local function value_of(i)
  local x = i * 2654435761 % 4294967296
  return ("user-%07d|%08x|%08x|"):format(i, x, x ~ 0x5bd1e995) .. ("%08x"):format(x * 31 % 4294967296):rep(9)
end

-- The job: a source of `keys` records into a keyed process that keeps one
-- value per key. Once the state is full, the source waits for two more
-- checkpoints to complete (the second one surely started after the fill),
-- then stops the job with an error, which keeps its checkpoints on disk.
-- With `restore` (a checkpoint) or `empty`, the source ends at once: only
-- starting the job is timed.
local function build(dir, restore, empty)
  local job = eddy.job {
    name = "bench-checkpoint", restore = restore,
    checkpoint = { interval = "1s", dir = dir, retained = 1, zstd_level = LEVEL,
                   externalized = "retain_on_cancellation" },
    restart = { strategy = "none" },
  }
  local n = 0
  local seen_at_fill
  job:source {
    name = "keys",
    next = function()
      if restore or empty then
        return nil
      end
      if n < keys then
        n = n + 1
        return n
      end
      -- retained = 1 keeps one folder: watch the newest id
      local newest = 0
      for _, c in ipairs(core.checkpoints_list(dir)) do
        if c.state == "completed" and c.id > newest then
          newest = c.id
        end
      end
      seen_at_fill = seen_at_fill or newest
      if newest >= seen_at_fill + 2 then
        error("bench: state checkpointed", 0)
      end
      return false -- nothing yet: looked at again in 10 ms
    end,
    snapshot = function() return n end,
    restore = function(_, pos) n = pos end,
  }
    :uid("keys")
    :key_by(function(i) return i end)
    :process("state", {
      process = function(ctx, i)
        ctx:value_state("v"):update(value_of(i))
      end,
    })
    :sink(function() end)
  return job
end

-- The restore: the same graph started from the checkpoint, minus the same
-- job started empty.
local function restore_ms(dir, path, work)
  local r = build(dir, path):run()
  local e = build(work .. "/empty", nil, true):run()
  return r.metrics.duration_ms - e.metrics.duration_ms
end

if cold_path then
  local work = io.popen("mktemp -d"):read("l")
  io.write(("restore_ms=%.1f\n"):format(restore_ms(work .. "/chk", cold_path, work)))
  sh("rm -rf " .. quote(work))
  return
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do
    s[i] = v
  end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function mb(bytes)
  return bytes / 1e6
end

local results = { sync = {}, async = {}, bytes = {}, raw = {}, restore = {}, cold = {},
                  zstd_c = {}, zstd_d = {}, ckpt_tp = {}, restore_tp = {} }

for run = 1, runs do
  local work = io.popen("mktemp -d"):read("l")
  local dir = work .. "/chk"
  local job = build(dir)
  local ok, err = pcall(job.run, job)
  assert(not ok and tostring(err):find("bench: state checkpointed", 1, true), err)
  local last
  for _, c in ipairs(job:checkpoints()) do
    if c.status == "completed" then
      last = c
    end
  end
  local info = core.checkpoint_info(last.path)
  -- the uncompressed bytes of the checkpoint, for zstd to work on
  local raw_size = 0
  for size in info.metadata:gmatch('"raw_size":%s*(%d+)') do
    raw_size = raw_size + tonumber(size)
  end
  sh(("cat %s/*.keyed %s/*.operators | zstd -q -d -c > %s/raw"):format(quote(last.path),
    quote(last.path), quote(work)))

  -- zstd beside it: the same bytes, one thread, eddy's level
  local t0 = core.monotonic_ms()
  sh(("zstd -q -T1 -%d -c %s/raw > %s/raw.zst"):format(LEVEL, quote(work), quote(work)))
  local t1 = core.monotonic_ms()
  sh(("zstd -q -d -c %s/raw.zst > /dev/null"):format(quote(work)))
  local t2 = core.monotonic_ms()

  -- warm: in this process, which has memory from the jobs before (as a
  -- restart after a failure has); cold: in a new process (--resume)
  local warm_ms = restore_ms(dir, last.path, work)
  local p = io.popen(("%s %s cold %s"):format(quote(os.getenv("LUA") or "lua5.4"), quote(arg[0]),
    quote(last.path)))
  local cold_ms = tonumber(p:read("a"):match("restore_ms=([%d.]+)"))
  assert(p:close() and cold_ms, "the cold restore failed")

  local async_ms = last.duration_ms - last.sync_ms
  results.sync[run] = last.sync_ms
  results.async[run] = async_ms
  results.bytes[run] = last.bytes
  results.raw[run] = raw_size
  results.restore[run] = warm_ms
  results.cold[run] = cold_ms
  results.zstd_c[run] = t1 - t0
  results.zstd_d[run] = t2 - t1
  results.ckpt_tp[run] = mb(raw_size) / (async_ms / 1000)
  results.restore_tp[run] = mb(raw_size) / (warm_ms / 1000)
  io.write(("  run %d: sync %.1f ms, async %.0f ms, %.1f MB on disk (%.1f MB raw), restore %.0f ms "
    .. "(%.0f ms in a new process); zstd -T1 -%d: compress %.0f ms, decompress %.0f ms\n"):format(run,
    last.sync_ms, async_ms, mb(last.bytes), mb(raw_size), warm_ms, cold_ms, LEVEL, t1 - t0, t2 - t1))
  sh("rm -rf " .. quote(work))
end

local raw = median(results.raw)
local zc = mb(raw) / (median(results.zstd_c) / 1000)
local zd = mb(raw) / (median(results.zstd_d) / 1000)
local ct, rt = median(results.ckpt_tp), median(results.restore_tp)
io.write(("checkpoint (heap, %d keys, ~100-byte values), medians of %d runs:\n"):format(keys, runs))
io.write(("  synchronous pause %.1f ms (target < 50 ms)\n"):format(median(results.sync)))
io.write(("  asynchronous part %.0f ms: %.0f MB/s of raw state; zstd -T1 -%d compresses at %.0f MB/s: "
  .. "ratio %.2f (target >= 0.7)\n"):format(median(results.async), ct, LEVEL, zc, ct / zc))
io.write(("  %.1f MB written for %.1f MB of state\n"):format(mb(median(results.bytes)), mb(raw)))
io.write(("  restore %.0f ms: %.0f MB/s; zstd -d at %.0f MB/s: ratio %.2f (target >= 0.7)\n")
  :format(median(results.restore), rt, zd, rt / zd))
local cold = median(results.cold)
io.write(("  restore in a new process %.0f ms: %.0f MB/s, ratio %.2f (its memory is new: page faults)\n")
  :format(cold, mb(raw) / (cold / 1000), mb(raw) / (cold / 1000) / zd))
