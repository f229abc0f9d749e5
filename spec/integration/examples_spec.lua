-- Every example runs through `eddy run` and prints exactly what the same
-- logic, written here in plain Lua over the same data, says it should.

local run = require "run"
local eddy = require "eddy"

local data = run.root .. "/examples/data/orders.jsonl"

-- The orders, read without eddy: the data set's lines have a fixed shape.
local function orders()
  local list = {}
  for line in io.lines(data) do
    list[#list + 1] = {
      order_id = math.tointeger(tonumber(line:match('"order_id":(%d+)'))),
      customer = line:match('"customer":"([^"]+)"'),
      product = line:match('"product":"([^"]+)"'),
      amount = tonumber(line:match('"amount":([%d.]+)')) + 0.0,
    }
  end
  return list
end

local function cents(x)
  return math.floor(x * 100 + 0.5) / 100
end

local function show(t)
  return eddy.inspect(t, { oneline = true })
end

local function expect_output(script, expected_lines)
  local out, err, code = run.eddy("run", run.root .. "/examples/" .. script)
  assert.are.equal("", err)
  assert.are.equal(0, code)
  assert.are.same(expected_lines, run.lines(out))
end

describe("examples", function()
  it("order_stats.lua emits the average of every 50 orders of a customer", function()
    local expected, stats = {}, {}
    for _, o in ipairs(orders()) do
      local s = stats[o.customer] or { count = 0, total = 0 }
      s.count, s.total = s.count + 1, s.total + o.amount
      if s.count == 50 then
        expected[#expected + 1] = show { customer = o.customer, orders = 50, total = cents(s.total),
                                         average = cents(s.total / 50) }
        s = nil
      end
      stats[o.customer] = s
    end
    assert.is_true(#expected > 20)
    expect_output("order_stats.lua", expected)
  end)

  it("order_list.lua invoices every 25 orders of a customer", function()
    local expected, pending = {}, {}
    for _, o in ipairs(orders()) do
      local p = pending[o.customer] or {}
      p[#p + 1] = o
      if #p == 25 then
        local total = 0
        for _, x in ipairs(p) do
          total = total + x.amount
        end
        expected[#expected + 1] = show { customer = o.customer, first = p[1].order_id,
                                         last = p[25].order_id, orders = 25, total = cents(total) }
        p = nil
      end
      pending[o.customer] = p
    end
    expect_output("order_list.lua", expected)
  end)

  it("order_map.lua reports every 10th purchase of a product", function()
    local expected, seen = {}, {}
    for _, o in ipairs(orders()) do
      local m = seen[o.customer] or {}
      seen[o.customer] = m
      local p = m[o.product] or { count = 0, spent = 0 }
      m[o.product] = p
      p.count, p.spent = p.count + 1, p.spent + o.amount
      if p.count % 10 == 0 then
        local n = 0
        for _ in pairs(m) do
          n = n + 1
        end
        expected[#expected + 1] = show { customer = o.customer, product = o.product, count = p.count,
                                         spent = cents(p.spent), products = n }
      end
    end
    expect_output("order_map.lua", expected)
  end)

  it("reducing_totals.lua reports every 1,000 a customer passes", function()
    local expected, totals = {}, {}
    for _, o in ipairs(orders()) do
      local before = totals[o.customer] or 0
      local after = before + o.amount
      totals[o.customer] = after
      local passed = math.floor(after / 1000) * 1000
      if passed > before then
        expected[#expected + 1] = show { customer = o.customer, passed = passed, total = cents(after),
                                         order_id = o.order_id }
      end
    end
    expect_output("reducing_totals.lua", expected)
  end)

  it("aggregating_average.lua reports the average at every 25th order", function()
    local expected, acc = {}, {}
    for _, o in ipairs(orders()) do
      local a = acc[o.customer] or { count = 0, sum = 0 }
      acc[o.customer] = a
      a.count, a.sum = a.count + 1, a.sum + o.amount
      if a.count % 25 == 0 then
        expected[#expected + 1] = show { customer = o.customer, orders = a.count,
                                         average = math.floor(a.sum / a.count * 100 + 0.5) / 100 }
      end
    end
    expect_output("aggregating_average.lua", expected)
  end)

  it("gives the same results at parallelism 3, with subtask prefixes", function()
    local one = run.lines((run.eddy("run", run.root .. "/examples/order_stats.lua")))
    local out, err, code = run.eddy("run", "-p", "3", run.root .. "/examples/order_stats.lua")
    assert.are.equal(0, code)
    assert.are.equal("", err)
    local three = {}
    for _, line in ipairs(run.lines(out)) do
      local n, rest = line:match("^(%d)> (.*)$")
      assert.is_truthy(n, line)
      three[#three + 1] = rest
    end
    table.sort(one)
    table.sort(three)
    assert.are.same(one, three)
  end)

  it("exactly_once.lua counts every order once through a failure and a restart", function()
    local dir = run.tmpdir()
    local out, err, code = run.eddy("run", run.root .. "/examples/exactly_once.lua", dir .. "/out")
    run.cleanup()
    assert.are.equal(0, code, err)
    assert.truthy(err:find("a simulated crash at order 2000", 1, true), err)
    assert.truthy(err:find("restarting from [^\n]*/chk%-%d+ in 100 ms %(attempt 1 of 2%)"), err)
    local totals, names = {}, {}
    for _, o in ipairs(orders()) do
      local t = totals[o.customer]
      if not t then
        t = { orders = 0, cents = 0 }
        totals[o.customer] = t
        names[#names + 1] = o.customer
      end
      t.orders = t.orders + 1
      t.cents = t.cents + math.floor(o.amount * 100 + 0.5)
    end
    table.sort(names)
    local lines = run.lines(out)
    assert.matches("^%d+ checkpoints completed; 3000 lines committed in " .. dir:gsub("%p", "%%%0"), lines[1])
    local expected = { lines[1] }
    for _, name in ipairs(names) do
      expected[#expected + 1] = ("%-8s %4d orders  %10.2f"):format(name, totals[name].orders,
        totals[name].cents / 100)
    end
    assert.are.same(expected, lines)
  end)

  it("buffering_sink.lua keeps its buffers in operator state through a savepoint and a rescale", function()
    local dir = run.tmpdir()
    local out, err, code = run.eddy("run", run.root .. "/examples/buffering_sink.lua", dir .. "/sp")
    run.cleanup()
    assert.are.equal(0, code, err)
    -- every order flushed once, or still buffered when the second run ends
    local seen, flushed, back, second = {}, 0, {}, false
    for line in out:gmatch("[^\n]+") do
      second = second or line:match("^savepoint: ") ~= nil
      local list = line:match("^flush> (.*)$") or second and line:match("still buffered at the end: (.*)$")
      if line:match("^flush> ") then
        flushed = flushed + 1
      end
      for id in (list or ""):gmatch("%d+") do
        assert.is_nil(seen[id], "order " .. id .. " twice")
        seen[id] = true
      end
      local n = line:match("^subtask %d of 3: (%d+) buffered orders back$")
      back[#back + 1] = n and tonumber(n) or nil
    end
    for _, o in ipairs(orders()) do
      if o.order_id > 80 then
        break
      end
      assert.truthy(seen[tostring(o.order_id)], "order " .. o.order_id .. " lost")
    end
    -- 50 orders in batches of 7 over 2 subtasks: 6 flushed, 8 buffered,
    -- handed back to 3 subtasks in chunks of 3, 3 and 2
    table.sort(back)
    assert.are.same({ 2, 3, 3 }, back)
    assert.equal(9, flushed)
  end)

  it("broadcast_rules.lua matches every rule's pair of shapes per color", function()
    local function jsonl(name)
      local list = {}
      for line in io.lines(run.root .. "/examples/data/" .. name) do
        list[#list + 1] = {
          id = math.tointeger(tonumber(line:match('"id":(%d+)'))),
          name = line:match('"name":"([^"]+)"'), color = line:match('"color":"([^"]+)"'),
          shape = line:match('"shape":"([^"]+)"'), first = line:match('"first":"([^"]+)"'),
          second = line:match('"second":"([^"]+)"'),
        }
      end
      return list
    end
    -- the rules apply from the first item on; per color and rule, the
    -- items waiting for their second shape
    local rules = jsonl("rules.jsonl")
    table.sort(rules, function(a, b) return a.name < b.name end)
    local expected, waiting = {}, {}
    for _, item in ipairs(jsonl("items.jsonl")) do
      for _, rule in ipairs(rules) do
        local key = item.color .. "/" .. rule.name
        local stored = waiting[key] or {}
        if item.shape == rule.second and #stored > 0 then
          for _, first in ipairs(stored) do
            expected[#expected + 1] = ("MATCH %s: %s %s #%d - %s #%d"):format(rule.name, item.color,
              first.shape, first.id, item.shape, item.id)
          end
          stored = {}
        end
        if item.shape == rule.first then
          stored[#stored + 1] = item
        end
        waiting[key] = stored
      end
    end
    local out, err, code = run.eddy("run", run.root .. "/examples/broadcast_rules.lua")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    local lines = {}
    for _, line in ipairs(run.lines(out)) do
      lines[#lines + 1] = assert(line:match("^[12]> (.*)$"), line)
    end
    table.sort(lines)
    table.sort(expected)
    assert.is_true(#expected >= 5)
    assert.are.same(expected, lines)
  end)

  it("order_stats_rocksdb.lua shows incremental checkpoints writing a fraction of the state", function()
    local dir = run.tmpdir()
    local out, err, code = run.eddy("run", run.root .. "/examples/order_stats_rocksdb.lua", dir .. "/chk")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    local lines = run.lines(out)
    -- 250,000 orders from 500 regulars: 10 reports of 50 each
    assert.equal("300000 orders, 5000 reports of 50 orders", lines[1])
    local rows = {}
    for i = 3, #lines do
      local id, written, state = lines[i]:match("^%s*(%d+)%s+([%d.]+) KB%s+([%d.]+) KB")
      rows[#rows + 1] = { id = tonumber(id), written = tonumber(written), state = tonumber(state) }
    end
    assert.is_true(#rows >= 4, out)
    -- the first uploads everything; later ones (RocksDB's compactions
    -- aside) a small part; the last is the final one
    assert.equal(rows[1].written, rows[1].state)
    local small = 0
    for i = 2, #rows - 1 do
      if rows[i].written < rows[i].state / 10 then
        small = small + 1
      end
    end
    assert.is_true(small >= 2, out)
    assert.truthy(lines[#lines]:find("(final: every subtask finished)", 1, true))
    run.cleanup()
  end)
end)
