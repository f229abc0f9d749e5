-- Restart strategies (Flink's RestartStrategy, SEMANTICS.md eddy's choice
-- 8): after a failure, whether to restart the job and after how long.
--
--   none               never
--   fixed_delay        up to `attempts` restarts, each after `delay`
--   exponential_delay  every time, after initial, initial * multiplier, ...
--                      up to max
--   failure_rate       unless more than `max_failures` failures fell within
--                      the last `interval` (inclusive, as Flink counts);
--                      each after `delay`
-- Times are milliseconds (eddy.config normalised them).

local M = {}

local Strategy = {}
Strategy.__index = Strategy

function M.new(conf)
  return setmetatable({ conf = conf or { strategy = "none" }, failures = 0, times = {} }, Strategy)
end

-- A failure happened at `now` (ms): returns the delay before the restart,
-- or nil to give up, and a few words on why.
function Strategy:on_failure(now)
  local c = self.conf
  self.failures = self.failures + 1
  local n = self.failures
  if c.strategy == "fixed_delay" then
    if n > c.attempts then
      return nil, ("fixed_delay: %d attempts used"):format(c.attempts)
    end
    return c.delay, ("attempt %d of %d"):format(n, c.attempts)
  elseif c.strategy == "exponential_delay" then
    local delay = c.initial * c.multiplier ^ (n - 1)
    delay = math.floor(math.min(delay, c.max))
    return delay, ("attempt %d, exponential delay"):format(n)
  elseif c.strategy == "failure_rate" then
    -- only the last max_failures + 1 failures matter: the strategy gives
    -- up once all of them fell within the interval
    local times = self.times
    times[#times + 1] = now
    if #times > c.max_failures + 1 then
      table.remove(times, 1)
    end
    local recent = 0
    for _, t in ipairs(times) do
      if now - t <= c.interval then
        recent = recent + 1
      end
    end
    if recent > c.max_failures then
      return nil, ("failure_rate: %d failures within %d ms"):format(recent, c.interval)
    end
    return c.delay, ("failure %d of at most %d per %d ms"):format(recent, c.max_failures, c.interval)
  end
  return nil, "restart strategy none"
end

return M
