-- Brute-force detection in event time: alert when a user fails to log in
-- 5 times in a row within one minute of event time.
--
-- Events arrive out of order (the log allows 10 minutes of lateness), so
-- "in a row" must mean in the order of the events' times, not of their
-- arrival. Each event waits in a ListState until the watermark passes its
-- time (an event-time timer at that time); then it is final, and the
-- timer handles everything due in time order: a success clears the run of
-- failures, a failure joins it, keeping only those within the last minute.
--
--   eddy run examples/login_failures.lua [logins.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/logins.jsonl"

local MINUTE, ATTEMPTS = 60 * 1000, 5

local function iso(ms)
  return os.date("!%Y-%m-%d %H:%M:%S", ms // 1000)
end

local job = eddy.job { name = "login-failures" }

job:from_file(input, { timestamp = "time", watermarks = eddy.watermarks.bounded("10m") })
  :key_by("user")
  :process("login-failures", {
    process = function(ctx, login)
      ctx:list_state("waiting"):add { time = login.time, success = login.success }
      ctx.timers:register_event_time(login.time)
    end,
    on_timer = function(ctx, now, out)
      -- the events the watermark has passed, in time order (arrival order
      -- among equal times); the others keep waiting
      local waiting = ctx:list_state("waiting")
      local due, later = {}, {}
      for i, e in ipairs(waiting:get()) do
        if e.time <= now then
          due[#due + 1] = { time = e.time, success = e.success, i = i }
        else
          later[#later + 1] = e
        end
      end
      waiting:update(later)
      table.sort(due, function(a, b) return a.time < b.time or (a.time == b.time and a.i < b.i) end)
      local failures = ctx:list_state("failures")
      local run = failures:get()
      for _, e in ipairs(due) do
        if e.success then
          run = {}
        else
          local recent = {}
          for _, t in ipairs(run) do
            if t > e.time - MINUTE then
              recent[#recent + 1] = t
            end
          end
          recent[#recent + 1] = e.time
          run = recent
          if #run >= ATTEMPTS then
            out { user = ctx:key(), failures = #run, from = iso(run[1]), to = iso(e.time) }
            run = {}
          end
        end
      end
      failures:update(run)
    end,
  })
  :print()

job:run()
