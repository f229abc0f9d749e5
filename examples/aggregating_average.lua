-- Average order value with AggregatingState, over the bundled orders.
--
-- Per customer, an AggregatingState folds each order amount into an
-- accumulator {count, sum} (create / add / merge) and reads it out as an
-- average (result). Every 25th order of a customer reports the average so
-- far.
--
--   eddy run examples/aggregating_average.lua [orders.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/orders.jsonl"
local every = 25

local average = {
  name = "average",
  create = function() return { count = 0, sum = 0 } end,
  add = function(acc, amount)
    acc.count = acc.count + 1
    acc.sum = acc.sum + amount
    return acc
  end,
  merge = function(a, b) return { count = a.count + b.count, sum = a.sum + b.sum } end,
  result = function(acc)
    return { orders = acc.count, average = math.floor(acc.sum / acc.count * 100 + 0.5) / 100 }
  end,
}

local job = eddy.job { name = "aggregating-average" }

job:from_file(input)
  :key_by("customer")
  :process("average-order", {
    process = function(ctx, order, out)
      local avg = ctx:aggregating_state(average)
      avg:add(order.amount)
      local r = avg:get()
      if r.orders % every == 0 then
        out { customer = ctx:key(), orders = r.orders, average = r.average }
      end
    end,
  })
  :print()

job:run()
