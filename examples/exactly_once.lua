-- Exactly once through a failure: checkpoints, a restart from the latest
-- one, and a transactional file sink.
--
-- Orders arrive one every 10 ms of the job's manual clock and go through
-- a running total per customer into part files. A checkpoint is taken
-- every 500 ms of that clock: the file source stores its byte offset, the
-- keyed operator its totals, the sink the part files it closed. Order 2000
-- makes the job fail once; it restarts from the latest completed
-- checkpoint, the source goes back to that checkpoint's offset, and the
-- sink drops what it wrote after it. Records are counted once each in the
-- committed files, as if the failure never happened.
--
--   eddy run examples/exactly_once.lua [out-dir]     (default out/exactly_once)
--   eddy run --trace examples/exactly_once.lua       (every barrier event)

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = here .. "/data/orders.jsonl"
local out_dir = arg and arg[1]
if not out_dir then
  out_dir = "out/exactly_once"
  os.execute("rm -rf " .. out_dir) -- the default folder starts empty each time
end

local job = eddy.job {
  name = "exactly-once", parallelism = 2, processing_time = "manual",
  checkpoint = { interval = "500ms" },
  restart = { strategy = "fixed_delay", attempts = 2, delay = "100ms" },
}

local failed = false
job:from_file(input, { arrival_time = function(order) return order.order_id * 10 end })
  :uid("orders")
  :map(function(order)
    if order.order_id == 2000 and not failed then
      failed = true
      error("a simulated crash at order 2000")
    end
    return order
  end)
  :key_by("customer")
  :process("totals", {
    process = function(ctx, order, out)
      local total = ctx:value_state("total")
      local t = total:value() or { orders = 0, cents = 0 }
      t.orders = t.orders + 1
      t.cents = t.cents + math.floor(order.amount * 100 + 0.5)
      total:update(t)
      out { customer = ctx:key(), orders = t.orders, cents = t.cents }
    end,
  })
  :to_file(out_dir):uid("committed-totals")

local result = job:run()

local completed = 0
for _, c in ipairs(result.checkpoints) do
  if c.status == "completed" then
    completed = completed + 1
  end
end

-- What the committed files say: every order once, so the last line of a
-- customer carries their number of orders and total.
local lines, last = 0, {}
local p = io.popen("cat " .. out_dir .. "/part-*")
for line in p:lines() do
  lines = lines + 1
  local customer = line:match('"customer":"([^"]+)"')
  local orders = tonumber(line:match('"orders":(%d+)'))
  if not last[customer] or orders > last[customer].orders then
    last[customer] = { orders = orders, cents = tonumber(line:match('"cents":(%d+)')) }
  end
end
p:close()

print(("%d checkpoints completed; %d lines committed in %s"):format(completed, lines, out_dir))
local names = {}
for customer in pairs(last) do
  names[#names + 1] = customer
end
table.sort(names)
for _, customer in ipairs(names) do
  local t = last[customer]
  print(("%-8s %4d orders  %10.2f"):format(customer, t.orders, t.cents / 100))
end
