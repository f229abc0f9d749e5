-- Brute-force detection in event time: alert when a user fails to log in
-- 5 times in a row within one minute.
--
-- Per user, a ListState keeps the times of the failed attempts since the
-- last success; a success clears it. An event-time timer one minute after
-- each failure drops failures that have grown too old, so a slow trickle
-- never adds up. Timestamps come from the events ("time"); the watermark
-- allows 10 minutes of lateness in the log.
--
--   eddy run examples/login_failures.lua [logins.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/logins.jsonl"

local MINUTE, ATTEMPTS = 60 * 1000, 5

local function iso(ms)
  return os.date("!%Y-%m-%d %H:%M:%S", ms // 1000)
end

-- the failure times still within a minute of `now`
local function recent(times, now)
  local keep = {}
  for _, t in ipairs(times) do
    if t > now - MINUTE then
      keep[#keep + 1] = t
    end
  end
  return keep
end

local job = eddy.job { name = "login-failures" }

job:from_file(input, { timestamp = "time", watermarks = eddy.watermarks.bounded("10m") })
  :key_by("user")
  :process("login-failures", {
    process = function(ctx, login, out)
      local failures = ctx:list_state("failures")
      if login.success then
        failures:clear()
        return
      end
      local times = recent(failures:get(), login.time)
      times[#times + 1] = login.time
      if #times >= ATTEMPTS then
        out { user = ctx:key(), failures = #times, from = iso(times[1]), to = iso(login.time) }
        failures:clear()
      else
        failures:update(times)
        ctx.timers:register_event_time(login.time + MINUTE)
      end
    end,
    on_timer = function(ctx, ts)
      local failures = ctx:list_state("failures")
      failures:update(recent(failures:get(), ts))
    end,
  })
  :print()

job:run()
