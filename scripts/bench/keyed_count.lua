-- Benchmark: keyed read-modify-write of a ValueState on the heap backend.
-- 10,000,000 records over 100,000 string keys; per record a keyed process
-- function reads the key's {count, total}, updates it and writes it back.
-- Inline executor, parallelism 1, no sink output. Prints records/s.
--   lua5.4 scripts/bench/keyed_count.lua [records] [keys] [heap|rocksdb]

local eddy = require "eddy"

local records = tonumber(arg and arg[1]) or 10000000
local nkeys = tonumber(arg and arg[2]) or 100000
local backend = arg and arg[3] or "heap"

local keys = {}
for i = 1, nkeys do
  keys[i] = "key-" .. i
end

local job = eddy.job { name = "keyed-count", executor = "inline", parallelism = 1,
                       state_backend = { type = backend } }
local state
job:from_generator {
  count = records,
  fn = function(i) return { key = keys[i % nkeys + 1], amount = i % 100 } end,
}
  :key_by("key")
  :process("count", {
    -- as in Flink, the state handle is obtained once, in open
    open = function(ctx) state = ctx:value_state("stats") end,
    process = function(_, r)
      local s = state:value() or { count = 0, total = 0 }
      s.count = s.count + 1
      s.total = s.total + r.amount
      state:update(s)
    end,
  })

local started = os.clock()
local t0 = require("eddy.core").monotonic_ms()
job:run()
local seconds = (require("eddy.core").monotonic_ms() - t0) / 1000
io.write(("keyed_count (%s): %d records, %d keys, %.2f s (cpu %.2f s), records_per_second=%.0f\n")
  :format(backend, records, nkeys, seconds, os.clock() - started, records / seconds))
