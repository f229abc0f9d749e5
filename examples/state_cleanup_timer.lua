-- Cleaning up state with a timer: the manual pattern that TTL automates.
--
-- Per user, a ValueState keeps how many times they logged in and when
-- last. Each login moves an event-time timer to 7 days after it (deleting
-- the previous one); when a timer fires, the user has been away for a
-- week: their state is cleared and a line says so. At the end of the input
-- the watermark jumps to the end of time, so every remaining user is
-- cleaned up too.
--
--   eddy run examples/state_cleanup_timer.lua [logins.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/logins.jsonl"

local WEEK = 7 * 24 * 60 * 60 * 1000

local function iso(ms)
  return os.date("!%Y-%m-%d %H:%M:%S", ms // 1000)
end

local job = eddy.job { name = "state-cleanup-timer" }

job:from_file(input, { timestamp = "time", watermarks = eddy.watermarks.bounded("10m") })
  :key_by("user")
  :process("last-seen", {
    process = function(ctx, login)
      local seen = ctx:value_state("seen")
      local s = seen:value() or { logins = 0, last = math.mininteger }
      if s.last > math.mininteger then
        ctx.timers:delete_event_time(s.last + WEEK)
      end
      s.logins = s.logins + 1
      s.last = math.max(s.last, login.time)
      seen:update(s)
      ctx.timers:register_event_time(s.last + WEEK)
    end,
    on_timer = function(ctx, _, out)
      local seen = ctx:value_state("seen")
      local s = seen:value()
      out { user = ctx:key(), logins = s.logins, last_seen = iso(s.last), cleared = iso(ctx:timestamp()) }
      seen:clear()
    end,
  })
  :print()

job:run()
