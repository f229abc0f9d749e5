-- Sessions: 30-minute session windows per user over a month of logins.
--
-- A session is a run of a user's login attempts with no gap of 30 minutes
-- or more; a new attempt within 30 minutes of a session extends it, and an
-- attempt that bridges two sessions merges them. When the watermark passes
-- a session's end, it goes out with its length and how many attempts
-- failed.
--
--   eddy run examples/sessions.lua [logins.jsonl]

local eddy = require "eddy"

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local input = arg and arg[1] or here .. "/data/logins.jsonl"

local function iso(ms)
  return os.date("!%Y-%m-%d %H:%M:%S", ms // 1000)
end

local job = eddy.job { name = "sessions" }

job:from_file(input, { timestamp = "time", watermarks = eddy.watermarks.bounded("10m") })
  :key_by("user")
  :window(eddy.windows.session("30m"))
  :aggregate("sessions", {
    create = function() return { attempts = 0, failed = 0 } end,
    add = function(acc, login)
      acc.attempts = acc.attempts + 1
      if not login.success then
        acc.failed = acc.failed + 1
      end
      acc.first = math.min(acc.first or login.time, login.time)
      acc.last = math.max(acc.last or login.time, login.time)
      acc.user = login.user
    end,
    merge = function(a, b)
      return { user = a.user, attempts = a.attempts + b.attempts, failed = a.failed + b.failed,
               first = math.min(a.first, b.first), last = math.max(a.last, b.last) }
    end,
    result = function(acc)
      return { user = acc.user, from = iso(acc.first), to = iso(acc.last),
               attempts = acc.attempts, failed = acc.failed }
    end,
  })
  :print()

job:run()
