-- Writes the event data sets of the time examples, the same on every run
-- (fixed seeds):
--   lua5.4 scripts/gen_events.lua logins > examples/data/logins.jsonl
--   lua5.4 scripts/gen_events.lua transactions > examples/data/transactions.jsonl
--
-- logins: a month of login attempts of 30 users (user, success, time),
-- with bursts of failed attempts, quiet spells of more than a week, and a
-- few events arriving late.
-- transactions: card transactions of 5 accounts (account, amount, time),
-- the time being when each one reaches the fraud detector; now and then a
-- tiny "test" charge is followed by a large one.

local which = arg[1]

local function logins()
  math.randomseed(7)
  local users = {}
  for i = 1, 30 do
    users[i] = ("user%02d"):format(i)
  end
  local start = 1767225600000 -- 2026-01-01T00:00:00Z
  local events = {}
  for i, user in ipairs(users) do
    local t = start + math.random(0, 36) * 3600000
    -- users 1-10 stop logging in after the first week or two
    local stop = start + (i <= 10 and math.random(7, 14) or 30) * 86400000
    while t < stop do
      -- a visit: a few attempts close together
      local attempts = math.random(1, 4)
      if math.random() < 0.08 then
        attempts = math.random(5, 8) -- a burst of failures
      end
      for a = 1, attempts do
        local burst = attempts >= 5
        local ok = burst and (a == attempts and math.random() < 0.3) or (not burst and math.random() < 0.85)
        local at = t + (a - 1) * math.random(2, 14) * 1000
        events[#events + 1] = { user = user, success = ok, time = at }
      end
      t = t + math.random(1, 60) * 3600000
    end
  end
  table.sort(events, function(a, b)
    if a.time ~= b.time then return a.time < b.time end
    return a.user < b.user
  end)
  for _, e in ipairs(events) do
    local t = e.time
    if math.random() < 0.02 then
      t = t - math.random(30, 600) * 1000 -- written down late
    end
    io.write(('{"user":"%s","success":%s,"time":%d}\n'):format(e.user, tostring(e.success), t))
  end
end

local function transactions()
  math.randomseed(11)
  local t = 1767261600000 -- 2026-01-01T10:00:00Z
  local thief -- an account whose card was just tested, and when it strikes
  for id = 1, 400 do
    t = t + math.random(2, 40) * 1000
    local account = math.random(1, 5)
    local cents = math.random(500, 30000)
    if thief and t >= thief.at then
      -- the large charge after the test: sometimes in time, sometimes late
      account, cents, thief = thief.account, math.random(50001, 120000), nil
    else
      local r = math.random()
      if r < 0.08 then
        cents = math.random(1, 99) -- a test charge under 1.00
        if not thief and math.random() < 0.6 then
          thief = { account = account, at = t + math.random(5, 90) * 1000 }
        end
      elseif r < 0.12 then
        cents = math.random(50001, 120000) -- over 500.00
      end
    end
    io.write(('{"id":%d,"account":%d,"amount":%d.%02d,"time":%d}\n')
      :format(id, account, cents // 100, cents % 100, t))
  end
end

if which == "logins" then
  logins()
elseif which == "transactions" then
  transactions()
else
  io.stderr:write("usage: lua5.4 scripts/gen_events.lua logins|transactions\n")
  os.exit(2)
end
