-- Favourite products with MapState, over the bundled orders.
--
-- Per customer, a MapState maps each product to {count, spent}; every time
-- a customer buys a product for the 10th, 20th, ... time, a milestone goes
-- out with what they spent on it.
--
--   eddy run examples/order_map.lua [orders.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/orders.jsonl"

local job = eddy.job { name = "order-map" }

job:from_file(input)
  :key_by("customer")
  :process("product-milestones", {
    process = function(ctx, order, out)
      local products = ctx:map_state("products")
      local p = products:get(order.product) or { count = 0, spent = 0 }
      p.count = p.count + 1
      p.spent = p.spent + order.amount
      products:put(order.product, p)
      if p.count % 10 == 0 then
        out { customer = ctx:key(), product = order.product, count = p.count,
              spent = math.floor(p.spent * 100 + 0.5) / 100,
              products = #products:keys() }
      end
    end,
  })
  :print()

job:run()
