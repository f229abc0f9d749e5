-- Hourly order totals: tumbling one-hour event-time windows over the
-- bundled orders, with 5 minutes of allowed lateness and a side output for
-- orders later than that.
--
-- The watermark trails the latest order time by one minute. An hour's
-- total goes out when the watermark passes the hour's end; an order for
-- that hour arriving within the next 5 minutes fires the window again with
-- the corrected total (a late firing); a later one goes to the "late"
-- side output and is printed with a "late> " prefix.
--
--   eddy run examples/hourly_totals.lua [orders.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/orders.jsonl"

local function iso(ms)
  return os.date("!%Y-%m-%d %H:%M", ms // 1000)
end

local job = eddy.job { name = "hourly-totals" }

local hourly = job:from_file(input, { timestamp = "time", watermarks = eddy.watermarks.bounded("1m") })
  :key_by(function() return "all orders" end)
  :window(eddy.windows.tumbling("1h"))
  :allowed_lateness("5m")
  :side_output_late("late")
  :process("hourly-totals", {
    process = function(_, window, orders, out)
      local total = 0
      for _, o in ipairs(orders) do
        total = total + o.amount
      end
      out { hour = iso(window.start), orders = #orders, total = math.floor(total * 100 + 0.5) / 100 }
    end,
  })

hourly:print()
hourly:side_output("late")
  :map(function(o) return { order = o.order_id, time = iso(o.time), amount = o.amount } end)
  :print { prefix = "late" }

job:run()
