-- Restart strategies: when a failed job restarts, after how long, and when
-- it gives up (Flink's RestartBackoffTimeStrategy implementations).

local config = require "eddy.config"
local restart = require "eddy.restart"

local function strategy(tbl)
  return restart.new(config.job { restart = tbl }.restart)
end

describe("restart strategies", function()
  it("none never restarts", function()
    assert.is_nil((strategy { strategy = "none" }:on_failure(0)))
  end)

  it("fixed_delay restarts `attempts` times after `delay`, then gives up", function()
    local s = strategy { strategy = "fixed_delay", attempts = 2, delay = "50ms" }
    assert.equal(50, (s:on_failure(0)))
    assert.equal(50, (s:on_failure(10)))
    local delay, why = s:on_failure(20)
    assert.is_nil(delay)
    assert.matches("2 attempts used", why, 1, true)
  end)

  it("exponential_delay multiplies the delay up to its maximum, without end", function()
    local s = strategy { strategy = "exponential_delay", initial = "10ms", max = "70ms", multiplier = 2 }
    local delays = {}
    for i = 1, 6 do
      delays[i] = s:on_failure(i)
    end
    assert.are.same({ 10, 20, 40, 70, 70, 70 }, delays)
  end)

  it("failure_rate gives up when more than max_failures fall within the interval", function()
    local s = strategy { strategy = "failure_rate", max_failures = 2, interval = "100ms", delay = "5ms" }
    assert.equal(5, (s:on_failure(0)))
    assert.equal(5, (s:on_failure(50)))
    -- the third within 100 ms (inclusive) is one too many
    assert.is_nil((s:on_failure(100)))
    local spaced = strategy { strategy = "failure_rate", max_failures = 2, interval = "100ms", delay = "5ms" }
    for i = 0, 10 do
      assert.equal(5, (spaced:on_failure(i * 60)), "failure " .. i)
    end
  end)

  it("defaults to fixed_delay, 3 attempts, 1 s with checkpointing, else none", function()
    local with = config.job { checkpoint = { interval = "1s" } }.restart
    assert.are.same({ strategy = "fixed_delay", attempts = 3, delay = 1000 }, with)
    assert.equal("none", config.job {}.restart.strategy)
  end)
end)
