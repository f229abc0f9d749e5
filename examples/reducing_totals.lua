-- Spending milestones with ReducingState, over the bundled orders.
--
-- Per customer, a ReducingState keeps the running total of their orders
-- (the state applies the reduce function on every add); each time the
-- total passes another 1,000.00 a milestone goes out.
--
--   eddy run examples/reducing_totals.lua [orders.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/orders.jsonl"
local step = 1000

local job = eddy.job { name = "reducing-totals" }

job:from_file(input)
  :key_by("customer")
  :process("spending", {
    process = function(ctx, order, out)
      local total = ctx:reducing_state { name = "total", reduce = function(a, b) return a + b end }
      local before = total:get() or 0
      total:add(order.amount)
      local after = total:get()
      local passed = math.floor(after / step) * step
      if passed > before then
        out { customer = ctx:key(), passed = passed,
              total = math.floor(after * 100 + 0.5) / 100, order_id = order.order_id }
      end
    end,
  })
  :print()

job:run()
