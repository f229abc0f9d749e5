-- Benchmark: timer churn on the RocksDB backend. Every record registers
-- an event-time timer 2 s after its own time for its key (a session-like
-- timeout), and the rising watermark fires the older ones, so timers are
-- registered, deduplicated and fired all the time; 1,000,000 records over
-- 10,000 keys, 1 ms apart. Timers kept in RocksDB (Flink's default) or in
-- memory beside it (timer-service factory HEAP). Prints records/s.
--   lua5.4 scripts/bench/timers.lua [records] [keys] [rocksdb|heap]

local eddy = require "eddy"
local core = require "eddy.core"

local records = tonumber(arg and arg[1]) or 1000000
local nkeys = tonumber(arg and arg[2]) or 10000
local timers = arg and arg[3] or "rocksdb"

local job = eddy.job { name = "timers", executor = "inline", parallelism = 1,
                       state_backend = { type = "rocksdb", timers = timers } }
local fired = 0
job:from_generator {
  count = records,
  fn = function(i) return { key = i % nkeys, ts = i } end,
}
  :assign_timestamps { timestamp = "ts", watermarks = eddy.watermarks.monotonous() }
  :key_by("key")
  :process("timeouts", {
    process = function(ctx, r)
      ctx.timers:register_event_time(r.ts - r.ts % 100 + 2000)
    end,
    on_timer = function() fired = fired + 1 end,
  })

local started = os.clock()
local t0 = core.monotonic_ms()
job:run()
local seconds = (core.monotonic_ms() - t0) / 1000
io.write(("timers (rocksdb backend, timers in %s): %d records, %d keys, %d fired, %.2f s "
  .. "(cpu %.2f s), records_per_second=%.0f\n")
  :format(timers, records, nkeys, fired, seconds, os.clock() - started, records / seconds))
