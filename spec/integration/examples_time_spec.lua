-- The event-time and processing-time examples, run through `eddy run` and
-- checked line by line against the same logic written here in plain Lua
-- over the same data (sessions: against the sessions the data contains,
-- in the order the watermark closes them).

local run = require "run"
local eddy = require "eddy"

local function load(name)
  local list = {}
  for line in io.lines(run.root .. "/examples/data/" .. name) do
    list[#list + 1] = require("cjson_like")(line)
  end
  return list
end

local function show(t)
  return eddy.inspect(t, { oneline = true })
end

local function iso(ms, fmt)
  return os.date(fmt or "!%Y-%m-%d %H:%M:%S", ms // 1000)
end

-- output_of(script [, data file]) or output_of(script, "-p", "3"): options
-- go before the script, a data file after it
local function output_of(script, ...)
  local args, data = { "run" }, nil
  for _, a in ipairs { ... } do
    if a:sub(1, 1) == "-" or tonumber(a) then
      args[#args + 1] = a
    else
      data = a
    end
  end
  args[#args + 1] = run.root .. "/examples/" .. script
  args[#args + 1] = data
  local out, err, code = run.eddy(table.unpack(args))
  assert.are.equal("", err)
  assert.are.equal(0, code)
  return run.lines(out)
end

local function without_prefix(lines)
  local t = {}
  for i, l in ipairs(lines) do
    t[i] = l:gsub("^%d+> ", "")
  end
  table.sort(t)
  return t
end

describe("time examples", function()
  it("fraud_detection.lua alerts on a large charge right after a small one, within the minute", function()
    local expected, flag = {}, {}
    for _, t in ipairs(load("transactions.jsonl")) do
      local f = flag[t.account]
      if f then
        -- the timer at f + 60000 fires before a transaction arriving then
        if t.time < f + 60000 and t.amount > 500 then
          expected[#expected + 1] = show { alert = t.account, transaction = t.id, amount = t.amount }
        end
        flag[t.account] = nil
      end
      if t.amount < 1 then
        flag[t.account] = t.time
      end
    end
    assert.is_true(#expected >= 3)
    assert.are.same(expected, output_of("fraud_detection.lua"))
    assert.are.same(without_prefix(expected), without_prefix(output_of("fraud_detection.lua", "-p", "3")))
  end)

  it("login_failures.lua alerts on 5 failures in a row, in event time, within a minute", function()
    -- in the order of event time per user (arrival order among equal times);
    -- an alert comes out when the watermark passes the 5th failure, so
    -- alerts are ordered by that time (ties by key group)
    local by_user = {}
    for i, e in ipairs(load("logins.jsonl")) do
      e.i = i
      by_user[e.user] = by_user[e.user] or {}
      table.insert(by_user[e.user], e)
    end
    local alerts = {}
    for user, events in pairs(by_user) do
      table.sort(events, function(a, b) return a.time < b.time or (a.time == b.time and a.i < b.i) end)
      local run = {}
      for _, e in ipairs(events) do
        if e.success then
          run = {}
        else
          local recent = {}
          for _, t in ipairs(run) do
            if t > e.time - 60000 then recent[#recent + 1] = t end
          end
          recent[#recent + 1] = e.time
          run = recent
          if #run >= 5 then
            alerts[#alerts + 1] = { at = e.time, user = user,
                                    line = show { user = user, failures = #run, from = iso(run[1]), to = iso(e.time) } }
            run = {}
          end
        end
      end
    end
    table.sort(alerts, function(a, b)
      if a.at ~= b.at then return a.at < b.at end
      return eddy.key_group(a.user) < eddy.key_group(b.user)
    end)
    local expected = {}
    for i, a in ipairs(alerts) do expected[i] = a.line end
    assert.is_true(#expected >= 5)
    assert.are.same(expected, output_of("login_failures.lua"))
  end)

  it("login_failures.lua puts late events back in their place", function()
    local dir = run.tmpdir()
    local path = run.write(dir .. "/late.jsonl", table.concat({
      '{"user":"u","success":false,"time":1000}', '{"user":"u","success":false,"time":11000}',
      '{"user":"u","success":false,"time":21000}', '{"user":"u","success":false,"time":31000}',
      -- arrives last, but happened first: 5 failures within a minute, in time order
      '{"user":"u","success":false,"time":500}',
      -- a success between failures in event time breaks the run
      '{"user":"v","success":false,"time":0}', '{"user":"v","success":false,"time":1}',
      '{"user":"v","success":false,"time":3}', '{"user":"v","success":false,"time":4}',
      '{"user":"v","success":false,"time":5}', '{"user":"v","success":true,"time":2}', "" }, "\n"))
    assert.are.same({ show { user = "u", failures = 5, from = iso(500), to = iso(31000) } },
      output_of("login_failures.lua", path))
    run.cleanup()
  end)

  it("hourly_totals.lua fires each hour, again for late orders, and sends later ones aside", function()
    local HOUR, LATENESS, DELAY = 3600000, 300000, 60000
    local expected, windows, wm, max_ts = {}, {}, math.mininteger, math.mininteger + DELAY + 1
    local function fire(w)
      local total = 0
      for _, o in ipairs(w.orders) do total = total + o.amount end
      expected[#expected + 1] = show { hour = iso(w.start, "!%Y-%m-%d %H:%M"), orders = #w.orders,
                                        total = math.floor(total * 100 + 0.5) / 100 }
    end
    local function advance(to)
      -- timers in time order: a window's firing at its end, its cleanup later
      local due = {}
      for start, w in pairs(windows) do
        if not w.fired and start + HOUR - 1 <= to then due[#due + 1] = w end
      end
      table.sort(due, function(a, b) return a.start < b.start end)
      for _, w in ipairs(due) do
        w.fired = true
        fire(w)
      end
      for start, w in pairs(windows) do
        if start + HOUR - 1 + LATENESS <= to then windows[start] = nil end
      end
      wm = to
    end
    for _, o in ipairs(load("orders.jsonl")) do
      local start = o.time - o.time % HOUR
      local w = windows[start]
      if start + HOUR - 1 + LATENESS <= wm then
        if o.time + LATENESS <= wm then
          expected[#expected + 1] = "late> " .. show { order = o.order_id, time = iso(o.time, "!%Y-%m-%d %H:%M"),
                                                        amount = o.amount }
        end
      else
        if not w then
          w = { start = start, orders = {} }
          windows[start] = w
        end
        w.orders[#w.orders + 1] = o
        if start + HOUR - 1 <= wm then fire(w) end
      end
      max_ts = math.max(max_ts, o.time)
      if max_ts - DELAY - 1 > wm then advance(max_ts - DELAY - 1) end
    end
    advance(math.maxinteger)
    local got = output_of("hourly_totals.lua")
    assert.are.same(expected, got)
    local late, refired = 0, 0
    for i, line in ipairs(got) do
      if line:find("^late> ") then late = late + 1 end
      if i > 1 and line:match('hour = "[^"]+"') == got[i - 1]:match('hour = "[^"]+"') then refired = refired + 1 end
    end
    assert.is_true(late >= 1 and refired >= 1, "the data should show late firings and late orders")
  end)

  it("sessions.lua closes each user's 30-minute sessions", function()
    local by_user = {}
    for _, e in ipairs(load("logins.jsonl")) do
      by_user[e.user] = by_user[e.user] or {}
      table.insert(by_user[e.user], e)
    end
    local expected = {}
    for user, events in pairs(by_user) do
      table.sort(events, function(a, b) return a.time < b.time end)
      local s
      for _, e in ipairs(events) do
        if s and e.time < s.last + 30 * 60000 then
          s.attempts, s.last = s.attempts + 1, e.time
          s.failed = s.failed + (e.success and 0 or 1)
        else
          if s then expected[#expected + 1] = s end
          s = { user = user, first = e.time, last = e.time, attempts = 1, failed = e.success and 0 or 1 }
        end
      end
      expected[#expected + 1] = s
    end
    -- the watermark closes sessions in the order of their ends (ties by key group)
    table.sort(expected, function(a, b)
      if a.last ~= b.last then return a.last < b.last end
      return eddy.key_group(a.user) < eddy.key_group(b.user)
    end)
    for i, s in ipairs(expected) do
      expected[i] = show { user = s.user, from = iso(s.first), to = iso(s.last), attempts = s.attempts,
                           failed = s.failed }
    end
    assert.are.same(expected, output_of("sessions.lua"))
    assert.are.same(without_prefix(expected), without_prefix(output_of("sessions.lua", "-p", "3")))
  end)

  it("state_cleanup_timer.lua forgets a user 7 days after their last login", function()
    local WEEK = 7 * 86400000
    local seen, timers, wm, max_ts, expected = {}, {}, math.mininteger, math.mininteger + 600001, {}
    local function advance(to)
      local due = {}
      for user, t in pairs(timers) do
        if t <= to then due[#due + 1] = { user = user, t = t } end
      end
      table.sort(due, function(a, b)
        if a.t ~= b.t then return a.t < b.t end
        return eddy.key_group(a.user) < eddy.key_group(b.user)
      end)
      for _, d in ipairs(due) do
        local s = seen[d.user]
        expected[#expected + 1] = show { user = d.user, logins = s.logins, last_seen = iso(s.last), cleared = iso(d.t) }
        seen[d.user], timers[d.user] = nil, nil
      end
      wm = to
    end
    for _, e in ipairs(load("logins.jsonl")) do
      local s = seen[e.user] or { logins = 0, last = math.mininteger }
      s.logins, s.last = s.logins + 1, math.max(s.last, e.time)
      seen[e.user], timers[e.user] = s, s.last + WEEK
      max_ts = math.max(max_ts, e.time)
      if max_ts - 600001 > wm then advance(max_ts - 600001) end
    end
    advance(math.maxinteger)
    assert.are.same(expected, output_of("state_cleanup_timer.lua"))
  end)
end)
