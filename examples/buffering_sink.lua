-- The BufferingSink of Flink's state guide ("Using Operator State"): a
-- sink that sends records on in batches, and keeps the batch it is
-- filling in operator list state, so that a checkpoint or savepoint holds
-- it and a restore, at any parallelism, hands it out again.
--
-- The script runs the job twice. The first run reads 50 orders and stops
-- with a savepoint at the end of its input (buffers half full). The second
-- starts from that savepoint at another parallelism, with 30 more orders:
-- the buffered orders come back, split between the new subtasks, and are
-- flushed with the new ones. No order is lost or flushed twice; what is
-- still buffered when the input ends is shown as the job closes.
--
--   eddy run examples/buffering_sink.lua [savepoint-dir]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local dir = arg and arg[1] or os.tmpname() .. ".savepoints"
local threshold = 7

local orders = {}
for line in io.lines(here .. "/data/orders.jsonl") do
  orders[#orders + 1] = tonumber(line:match('"order_id":(%d+)'))
  if #orders == 80 then
    break
  end
end

local function buffering_sink(job, upto, parallelism)
  job:from_collection(table.move(orders, 1, upto, 1, {})):uid("orders")
    :rebalance()
    :process("buffering-sink", {
      initialize_state = function(ctx)
        ctx.buffer = {}
        -- what a checkpoint or savepoint held of this subtask's buffers
        if ctx:is_restored() then
          ctx.buffer = ctx:operator_list_state("buffered-elements"):get()
          print(("subtask %d of %d: %d buffered orders back"):format(ctx:subtask() + 1,
            parallelism, #ctx.buffer))
        end
      end,
      process = function(ctx, order, out)
        local buffer = ctx.buffer
        buffer[#buffer + 1] = order
        if #buffer >= threshold then
          out(table.concat(buffer, ","))
          ctx.buffer = {}
        end
      end,
      snapshot_state = function(ctx)
        ctx:operator_list_state("buffered-elements"):update(ctx.buffer)
      end,
      close = function(ctx)
        if #ctx.buffer > 0 then
          print(("subtask %d of %d: still buffered at the end: %s"):format(ctx:subtask() + 1,
            parallelism, table.concat(ctx.buffer, ",")))
        end
      end,
    })
    :parallelism(parallelism)
    :print { prefix = "flush" }
end

local first = eddy.job { name = "buffering-sink" }
buffering_sink(first, 50, 2)
local savepoint = first:run { savepoint = dir }.savepoint
print("savepoint: " .. savepoint)

local second = eddy.job { name = "buffering-sink", restore = savepoint }
buffering_sink(second, 80, 3)
second:run()
