-- Invoice batches with ListState, over the bundled orders.
--
-- Per customer, a ListState collects the orders not yet invoiced; when 25
-- have piled up, one invoice goes out with their ids and total, and the
-- list is cleared.
--
--   eddy run examples/order_list.lua [orders.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/orders.jsonl"
local batch = 25

local job = eddy.job { name = "order-list" }

job:from_file(input)
  :key_by("customer")
  :process("invoices", {
    process = function(ctx, order, out)
      local pending = ctx:list_state("pending")
      pending:add { id = order.order_id, amount = order.amount }
      local orders = pending:get()
      if #orders == batch then
        local ids, total = {}, 0
        for i, o in ipairs(orders) do
          ids[i] = o.id
          total = total + o.amount
        end
        out { customer = ctx:key(), first = ids[1], last = ids[#ids], orders = #ids,
              total = math.floor(total * 100 + 0.5) / 100 }
        pending:clear()
      end
    end,
  })
  :print()

job:run()
