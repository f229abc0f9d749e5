-- The keyed-state conformance suite: every state kind and method, run
-- through the harness against every backend. A behaviour that differs
-- between backends is a bug, so each backend runs exactly these specs.

local backends = require "backends"
local eddy = require "eddy"

-- A harness whose process function runs `body(ctx, record, out)`.
local function harness(backend, body, extra)
  local fns = { process = body }
  for k, v in pairs(extra or {}) do
    fns[k] = v
  end
  return backends.harness(backend, { process = fns, key_by = "k" })
end

for _, backend in ipairs(backends) do
  describe("keyed state on the " .. backend .. " backend", function()
    describe("value state", function()
      it("is nil until updated, per key, and update(nil) or clear() remove it", function()
        local h = harness(backend, function(ctx, r, out)
          local s = ctx:value_state("v")
          out(s:value() == nil and "none" or s:value())
          if r.set ~= nil then
            s:update(r.set)
          end
          if r.clear then
            s:clear()
          end
          if r.set_nil then
            s:update(nil)
          end
        end)
        h:push { k = "a", set = 1 }
        h:push { k = "b", set = { x = 1.5, y = { "z" } } }
        h:push { k = "a", set = 2 }
        h:push { k = "b" }
        h:push { k = "a", clear = true }
        h:push { k = "a", set = 3 }
        h:push { k = "a", set_nil = true }
        h:push { k = "a" }
        assert.are.same({ "none", "none", 1, { x = 1.5, y = { "z" } }, 2, "none", 3, "none" }, h:output())
        assert.are.same({ x = 1.5, y = { "z" } }, h:state("v", "b"))
        assert.is_nil(h:state("v", "a"))
      end)

      it("keeps integers and floats apart", function()
        local h = harness(backend, function(ctx, r, out)
          local s = ctx:value_state("v")
          s:update(r.v)
          out(math.type(s:value()))
        end)
        h:push { k = 1, v = 3 }
        h:push { k = 1, v = 3.0 }
        assert.are.same({ "integer", "float" }, h:output())
      end)

      it("hands out a fresh copy of its default each time", function()
        local h = harness(backend, function(ctx, _, out)
          local s = ctx:value_state { name = "v", default = { n = 0 } }
          local v = s:value()
          v.n = v.n + 1
          out(v.n)
        end)
        h:push { k = "a" }
        h:push { k = "a" }
        assert.are.same({ 1, 1 }, h:output())
      end)

      it("names the state and path of a value it cannot store", function()
        local h = harness(backend, function(ctx)
          ctx:value_state("v"):update { f = print }
        end)
        local ok, err = pcall(h.push, h, { k = "a" })
        assert.is_false(ok)
        assert.matches("value state 'v': cannot store a function at value.f", err, 1, true)
      end)

      it("has no current key outside process", function()
        local handle
        local h = harness(backend, function() end, {
          open = function(ctx) handle = ctx:value_state("v") end,
        })
        assert.is_not_nil(h)
        local ok, err = pcall(handle.value, handle)
        assert.is_false(ok)
        assert.matches("value state 'v': no current key", err, 1, true)
      end)
    end)

    describe("list state", function()
      it("adds, reads in order, replaces and clears", function()
        local h = harness(backend, function(ctx, r, out)
          local l = ctx:list_state("l")
          if r.add then l:add(r.add) end
          if r.add_all then l:add_all(r.add_all) end
          if r.update then l:update(r.update) end
          if r.clear then l:clear() end
          out(l:get())
        end)
        h:push { k = "a" }
        h:push { k = "a", add = 1 }
        h:push { k = "a", add = { t = true } }
        h:push { k = "b", add = "other key" }
        h:push { k = "a", add_all = { 3, 4 } }
        h:push { k = "a", update = { "x", "y" } }
        h:push { k = "a", update = {} }
        h:push { k = "a", add = 5 }
        h:push { k = "a", clear = true }
        assert.are.same({
          {}, { 1 }, { 1, { t = true } }, { "other key" }, { 1, { t = true }, 3, 4 },
          { "x", "y" }, {}, { 5 }, {},
        }, h:output())
      end)

      it("refuses nil elements", function()
        local h = harness(backend, function(ctx, r)
          local l = ctx:list_state("l")
          if r.all then l:add_all(r.all) elseif r.set then l:update(r.set) else l:add(nil) end
        end)
        local ok, err = pcall(h.push, h, { k = "a" })
        assert.is_false(ok)
        assert.matches("list state 'l': cannot add nil", err, 1, true)
        for _, bad in ipairs { { all = { 1, nil, 3 } }, { set = { 1, nil, 3 } }, { all = { a = 1 } } } do
          bad.k = "a"
          ok, err = pcall(h.push, h, bad)
          assert.is_false(ok)
          assert.matches("expected an array of values without holes", err, 1, true)
        end
        assert.are.same({}, h:state("l"))
      end)
    end)

    describe("map state", function()
      it("puts, gets, removes and answers contains and is_empty", function()
        local h = harness(backend, function(ctx, r, out)
          local m = ctx:map_state("m")
          if r.put then m:put(r.put[1], r.put[2]) end
          if r.remove then m:remove(r.remove) end
          if r.put_nil then m:put(r.put_nil, nil) end
          out { get = m:get("x"), has = m:contains("x"), empty = m:is_empty() }
        end)
        h:push { k = "a" }
        h:push { k = "a", put = { "x", 1 } }
        h:push { k = "a", put = { "x", { deep = { 2 } } } }
        h:push { k = "b" }
        h:push { k = "a", remove = "x" }
        h:push { k = "a", put = { "x", 3 } }
        h:push { k = "a", put_nil = "x" }
        assert.are.same({
          { has = false, empty = true },
          { get = 1, has = true, empty = false },
          { get = { deep = { 2 } }, has = true, empty = false },
          { has = false, empty = true },
          { has = false, empty = true },
          { get = 3, has = true, empty = false },
          { has = false, empty = true },
        }, h:output())
      end)

      it("lists keys, values and pairs in the order of their encoded keys", function()
        local h = harness(backend, function(ctx, r, out)
          local m = ctx:map_state("m")
          m:put_all(r.all)
          local ks, vs = {}, {}
          for k, v in m:pairs() do
            ks[#ks + 1] = k
            vs[#vs + 1] = v
          end
          out { keys = m:keys(), values = m:values(), pairs_keys = ks, pairs_values = vs }
        end)
        h:push { k = "a", all = { pear = 1, fig = 2, [10] = 3, [2] = 4, apple = 5 } }
        local o = h:output()[1]
        -- small integers first (their bytes are smaller), then strings by
        -- length and bytes, as MessagePack encodes them
        local keys = { 2, 10, "fig", "pear", "apple" }
        assert.are.same(keys, o.keys)
        assert.are.same({ 4, 3, 2, 1, 5 }, o.values)
        assert.are.same(keys, o.pairs_keys)
        assert.are.same({ 4, 3, 2, 1, 5 }, o.pairs_values)
      end)

      it("lets a pairs loop change the map", function()
        local h = harness(backend, function(ctx, _, out)
          local m = ctx:map_state("m")
          m:put_all { a = 1, b = 2, c = 3 }
          for k in m:pairs() do
            m:remove(k)
          end
          out(m:is_empty())
        end)
        h:push { k = 1 }
        assert.are.same({ true }, h:output())
      end)

      it("takes tables, numbers and booleans as map keys, never nil", function()
        local h = harness(backend, function(ctx, r, out)
          local m = ctx:map_state("m")
          if r.bad then
            m:put(nil, 1)
          end
          m:put({ 1, 2 }, "tuple")
          m:put(true, "yes")
          m:put(1.5, "float")
          out { m:get({ 1, 2 }), m:get(true), m:get(1.5) }
        end)
        h:push { k = "a" }
        assert.are.same({ { "tuple", "yes", "float" } }, h:output())
        local ok, err = pcall(h.push, h, { k = "a", bad = true })
        assert.is_false(ok)
        assert.matches("map state 'm': a map key must not be nil", err, 1, true)
      end)
    end)

    describe("reducing state", function()
      it("folds every added value with the reduce function", function()
        local calls = {}
        local h = harness(backend, function(ctx, r, out)
          local s = ctx:reducing_state { name = "sum", reduce = function(a, b)
            calls[#calls + 1] = { a, b }
            return a + b
          end }
          if r.clear then
            s:clear()
          else
            s:add(r.v)
          end
          out(s:get() or "empty")
        end)
        h:push { k = "a", v = 1 }
        h:push { k = "a", v = 2 }
        h:push { k = "b", v = 10 }
        h:push { k = "a", v = 3 }
        h:push { k = "a", clear = true }
        assert.are.same({ 1, 3, 10, 6, "empty" }, h:output())
        assert.are.same({ { 1, 2 }, { 3, 3 } }, calls)
      end)

      it("refuses a reduce function that returns nil", function()
        local h = harness(backend, function(ctx)
          local s = ctx:reducing_state { name = "r", reduce = function() end }
          s:add(1)
          s:add(2)
        end)
        local ok, err = pcall(h.push, h, { k = "a" })
        assert.is_false(ok)
        assert.matches("reducing state 'r': the reduce function returned nil", err, 1, true)
      end)
    end)

    describe("aggregating state", function()
      local avg = {
        name = "avg",
        create = function() return { n = 0, sum = 0 } end,
        add = function(acc, v) acc.n = acc.n + 1; acc.sum = acc.sum + v end, -- in place
        result = function(acc) return acc.sum / acc.n end,
        merge = function(a, b) return { n = a.n + b.n, sum = a.sum + b.sum } end,
      }

      it("creates, adds and reads through result", function()
        local h = harness(backend, function(ctx, r, out)
          local s = ctx:aggregating_state(avg)
          if r.clear then
            s:clear()
          else
            s:add(r.v)
          end
          out(s:get() or "empty")
        end)
        h:push { k = "a", v = 2 }
        h:push { k = "a", v = 4 }
        h:push { k = "a", clear = true }
        h:push { k = "a", v = 7 }
        assert.are.same({ 2.0, 3.0, "empty", 7.0 }, h:output())
        assert.are.same({ n = 1, sum = 7 }, h:state("avg", "a"))
      end)

      it("returns the accumulator when there is no result function", function()
        local h = harness(backend, function(ctx, _, out)
          local s = ctx:aggregating_state { name = "count", create = function() return 0 end,
                                             add = function(acc) return acc + 1 end }
          s:add("x")
          s:add("y")
          out(s:get())
        end)
        h:push { k = "a" }
        assert.are.same({ 2 }, h:output())
      end)

      it("needs add to return an accumulator that is not a table", function()
        local h = harness(backend, function(ctx)
          local s = ctx:aggregating_state { name = "n", create = function() return 0 end, add = function() end }
          s:add(1)
        end)
        local ok, err = pcall(h.push, h, { k = 1 })
        assert.is_false(ok)
        assert.matches("aggregating state 'n': add returned nil (return the new accumulator)", err, 1, true)
      end)

      it("needs create and add", function()
        local h = harness(backend, function(ctx) ctx:aggregating_state { name = "x", add = print } end)
        local ok, err = pcall(h.push, h, { k = 1 })
        assert.is_false(ok)
        assert.matches("'create' must be a function", err, 1, true)
      end)
    end)

    describe("registry and listing", function()
      it("checks the type of a handle's receiver", function()
        local h = harness(backend, function(ctx, _, out)
          local v = ctx:value_state("v")
          out(tostring(v))
          out { (pcall(getmetatable(v).__tostring, {})) }
        end)
        local out = h:push { k = 1 }
        assert.are.same({ "value state 'v'", { false } }, out)
      end)

      it("refuses one name for two kinds", function()
        local h = harness(backend, function(ctx)
          ctx:value_state("s")
          ctx:list_state("s")
        end)
        local ok, err = pcall(h.push, h, { k = 1 })
        assert.is_false(ok)
        assert.matches("state 's' is a value state, not a list state", err, 1, true)
      end)

      it("lists every key of every state with its key group", function()
        local h = harness(backend, function(ctx, r)
          ctx:value_state("count"):update(r.n)
          ctx:list_state("seen"):add(r.n)
        end)
        h:push { k = "user_42", n = 1 }
        h:push { k = "a", n = 2 }
        h:push { k = 3, n = 3 }
        local all = h:state()
        local rows = all.count
        assert.are.equal(3, #rows)
        local seen = {}
        local last_kg = -1
        for _, row in ipairs(rows) do
          assert.are.equal(eddy.key_group(row.key), row.key_group)
          assert.is_true(row.key_group >= last_kg)
          last_kg = row.key_group
          seen[tostring(row.key)] = row.value
        end
        assert.are.same({ user_42 = 1, a = 2, ["3"] = 3 }, seen)
        assert.are.same(h:state("count"), rows)
        assert.are.same({ 1 }, h:state("seen", "user_42"))
        assert.are.same({}, h:state("nothing"))
      end)

      it("keeps keys of every type apart", function()
        local h = harness(backend, function(ctx, r, out)
          local s = ctx:value_state("v")
          s:update((s:value() or 0) + 1)
          out { key = ctx:key(), n = s:value() }
        end)
        for _, k in ipairs { 1, 1.0, "1", true, { 1 }, { 1 }, 1 } do
          h:push { k = k }
        end
        local ns = {}
        for i, o in ipairs(h:output()) do
          ns[i] = o.n
        end
        assert.are.same({ 1, 1, 1, 1, 1, 2, 2 }, ns)
      end)
    end)
  end)
end
