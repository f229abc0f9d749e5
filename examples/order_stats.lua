-- Order statistics with ValueState: the CountWindowAverage example of
-- Flink's state guide, over the bundled orders.
--
-- Per customer, a ValueState holds {count, total} of the orders seen since
-- the last report; every 50th order emits the customer's average order and
-- clears the state, so the next 50 start afresh.
--
--   eddy run examples/order_stats.lua [orders.jsonl]
--   eddy run -p 3 examples/order_stats.lua        (three subtasks: "2> ...")

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/orders.jsonl"
local every = 50

local function cents(x)
  return math.floor(x * 100 + 0.5) / 100
end

local job = eddy.job { name = "order-stats" }

job:from_file(input)
  :key_by("customer")
  :process("order-stats", {
    process = function(ctx, order, out)
      local stats = ctx:value_state("stats")
      local s = stats:value() or { count = 0, total = 0 }
      s.count = s.count + 1
      s.total = s.total + order.amount
      if s.count == every then
        out { customer = ctx:key(), orders = s.count, total = cents(s.total),
              average = cents(s.total / s.count) }
        stats:clear()
      else
        stats:update(s)
      end
    end,
  })
  :print()

job:run()
