-- Order statistics on RocksDB with incremental checkpoints.
--
-- The order-stats job (examples/order_stats.lua: per customer, {count,
-- total} in a ValueState, a report every 50 orders) over a larger,
-- generated stream: 50,000 customers order once each, then the orders come
-- from 500 regular customers (1% of them). Checkpoints are taken every
-- second of the job's manual clock, which the generator moves at 50,000
-- orders per second, so the run is the same every time.
--
-- The first checkpoint uploads RocksDB's files with every customer; the
-- later ones upload only the files written since, the changes of the
-- regular customers, and reference the rest in <dir>/<job id>/shared/.
-- The table at the end shows what each wrote beside the state it stands
-- for. Now and then RocksDB compacts its level-0 files into level 1 and
-- rewrites the files they overlap: the checkpoint after that uploads them
-- again (as in Flink).
--
--   eddy run examples/order_stats_rocksdb.lua [checkpoint-dir]

local eddy = require "eddy"

local dir = arg and arg[1] or os.tmpname() .. ".checkpoints"
local customers, regulars, orders, rate = 50000, 500, 300000, 50000
local every = 50

local job = eddy.job {
  name = "order-stats-rocksdb",
  processing_time = "manual",
  state_backend = { type = "rocksdb", incremental = true },
  checkpoint = { interval = "1s", dir = dir, retained = 3 },
}

-- order i: customers 1..50,000 once each, then the regulars in turn
local function order(i)
  local c = i <= customers and i or (i * 7919) % regulars + 1
  return { customer = ("customer-%05d"):format(c), amount = (i * 37) % 20000 / 100 }
end

local reports = 0
job:from_generator { count = orders, rate = rate, fn = order }:uid("orders")
  :key_by("customer")
  :process("order-stats", {
    process = function(ctx, o, out)
      local stats = ctx:value_state("stats")
      local s = stats:value() or { count = 0, total = 0 }
      s.count = s.count + 1
      s.total = s.total + o.amount
      if s.count == every then
        out { customer = ctx:key(), average = math.floor(s.total / s.count * 100 + 0.5) / 100 }
        stats:clear()
      else
        stats:update(s)
      end
    end,
  })
  :sink(function() reports = reports + 1 end):uid("reports")

local result = job:run()
print(("%d orders, %d reports of 50 orders"):format(orders, reports))
print("checkpoint  written     state")
local completed = {}
for _, c in ipairs(result.checkpoints) do
  if c.status == "completed" then
    completed[#completed + 1] = c
  end
end
for i, c in ipairs(completed) do
  -- the last one comes after the end of the input, when the subtasks
  -- have finished and hold nothing more (Flink's final checkpoint)
  print(("%10d  %8.1f KB  %8.1f KB%s"):format(c.id, c.bytes / 1024, c.state_size / 1024,
    i == #completed and "  (final: every subtask finished)" or ""))
end
os.execute("rm -rf '" .. dir:gsub("'", [['\'']]) .. "'")
