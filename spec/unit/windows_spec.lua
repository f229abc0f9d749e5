-- Windows (SEMANTICS.md section 5) through the harness: assigners, firing
-- at the window's end, allowed lateness and late firings, late records
-- dropped or side-output, session merging, negative timestamps, and window
-- state visible by namespace. On every backend: window contents are
-- namespaced keyed state.

local backends = require "backends"
local eddy = require "eddy"
local W = eddy.windows

local function sum(a, b) return { k = a.k, n = a.n + b.n } end

for _, backend in ipairs(backends) do
  local function harness(spec)
    return backends.harness(backend, { key_by = "k", process = W.operator(spec) })
  end

  local function push(h, k, ts, n)
    return h:push({ k = k, n = n or 1 }, ts)
  end

  describe("window assigners on the " .. backend .. " backend", function()
    it("start tumbling windows with a floor modulo, negative timestamps too", function()
      local h = harness { assigner = W.tumbling(10), process = function(_, w, all, out)
        out { w.start, w.stop, #all }
      end }
      push(h, "k", -1)
      push(h, "k", -10)
      push(h, "k", -11)
      push(h, "k", 0)
      push(h, "k", 9)
      push(h, "k", 10) -- exactly at the first window's end: the next window
      h:watermark(math.maxinteger)
      assert.are.same({ { -20, -10, 1 }, { -10, 0, 2 }, { 0, 10, 2 }, { 10, 20, 1 } }, h:output())
    end)

    it("apply the offset", function()
      local h = harness { assigner = W.tumbling(10, 3), process = function(_, w, all, out)
        out { w.start, #all }
      end }
      push(h, "k", 2)
      push(h, "k", 3)
      push(h, "k", 12)
      h:watermark(100)
      assert.are.same({ { -7, 1 }, { 3, 2 } }, h:output())
    end)

    it("put a record into every sliding window that holds it, size not a multiple of slide", function()
      local h = harness { assigner = W.sliding(10, 3), process = function(_, w, all, out)
        local ns = {}
        for i, r in ipairs(all) do ns[i] = r.n end
        out { w.start, w.stop, ns }
      end }
      push(h, "k", 7, 7)
      push(h, "k", 11, 11)
      h:watermark(100)
      -- starts are multiples of the slide: 7 is in [0,10) [3,13) [6,16),
      -- 11 in [3,13) [6,16) [9,19); ceil(10/3) is 4 but a window must start
      -- after ts - size
      assert.are.same({
        { 0, 10, { 7 } }, { 3, 13, { 7, 11 } }, { 6, 16, { 7, 11 } }, { 9, 19, { 11 } },
      }, h:output())
    end)

    it("refuse impossible parameters", function()
      assert.has_error(function() W.tumbling(0) end, "eddy.windows.tumbling: size must be more than 0ms")
      assert.has_error(function() W.tumbling(10, 10) end, "eddy.windows.tumbling: the offset must be smaller than the size")
      assert.has_error(function() W.sliding(10, 0) end, "eddy.windows.sliding: slide must be more than 0ms")
      assert.has_error(function() W.session("soon") end)
    end)
  end)

  describe("window firing on the " .. backend .. " backend", function()
    it("fires at max timestamp (end - 1), stamped with it, and then clears the window", function()
      local h = harness { assigner = W.tumbling(10), reduce = sum }
      push(h, "a", 3, 1)
      push(h, "a", 9, 2)
      assert.are.equal(1, #h:state("window-contents"))
      assert.are.same({ k = "a", n = 3 }, h:state("window-contents", "a", { start = 0, stop = 10 }))
      assert.are.same({}, h:watermark(8))
      assert.are.same({ { k = "a", n = 3 } }, h:watermark(9))
      assert.are.same({ { value = { k = "a", n = 3 }, timestamp = 9 } }, h:output { timestamps = true })
      assert.are.same({}, h:state("window-contents"))
      assert.are.same({}, h:timers())
    end)

    it("fires again with all contents for late records during allowed lateness, then cleans up", function()
      local h = harness { assigner = W.tumbling(10), reduce = sum, allowed_lateness = 5, late = "late" }
      push(h, "a", 1, 1)
      assert.are.same({ { k = "a", n = 1 } }, h:watermark(10))
      -- the window's state stays until max timestamp + lateness = 14
      assert.are.same({ { k = "a", n = 11 } }, push(h, "a", 2, 10))
      assert.are.same({ { k = "a", n = 111 } }, push(h, "a", 9, 100))
      assert.are.same({}, h:watermark(14))
      assert.are.same({}, h:state("window-contents"))
      -- past cleanup: late, and past ts + lateness: side output
      assert.are.same({}, push(h, "a", 5, 1000))
      assert.are.same({ { k = "a", n = 1000 } }, h:side_output("late"))
    end)

    it("drops late records when there is no late side output", function()
      local h = harness { assigner = W.tumbling(10), reduce = sum }
      h:watermark(50)
      assert.are.same({}, push(h, "a", 5))
      assert.are.same({}, h:side_output("late"))
      assert.are.same({}, h:state("window-contents"))
      assert.are.same({}, h:timers())
    end)

    it("aggregates with create, add, result", function()
      local h = harness { assigner = W.tumbling(10), aggregate = {
        create = function() return { n = 0, sum = 0 } end,
        add = function(acc, r) acc.n = acc.n + 1; acc.sum = acc.sum + r.n end,
        result = function(acc) return acc.sum / acc.n end,
        merge = function(a, b) return { n = a.n + b.n, sum = a.sum + b.sum } end,
      } }
      push(h, "a", 1, 2)
      push(h, "a", 2, 4)
      assert.are.same({ 3.0 }, h:watermark(9))
    end)
  end)

  describe("session windows on the " .. backend .. " backend", function()
    local function sessions()
      return harness { assigner = W.session(10), process = function(ctx, w, all, out)
        local ts = {}
        for i, r in ipairs(all) do ts[i] = r.n end
        out(("%s [%d,%d) %s"):format(ctx:key(), w.start, w.stop, table.concat(ts, ",")))
      end }
    end

    it("merge when a record bridges two sessions, keeping one namespace", function()
      local h = sessions()
      push(h, "a", 0, 0)
      push(h, "a", 20, 20)
      assert.are.equal(2, #h:state("window-contents"))
      push(h, "a", 10, 10) -- [10,20) touches [0,10) and [20,30)
      local rows = h:state("window-contents")
      assert.are.equal(1, #rows)
      -- the merged session keeps the earliest session's namespace
      assert.are.same({ start = 0, stop = 10 }, rows[1].namespace)
      assert.are.same({ { window = { start = 0, stop = 30 }, state = { start = 0, stop = 10 } } },
        h:state("merging-window-set", "a"))
      assert.are.same({ "a [0,30) 0,20,10" }, h:watermark(29))
      assert.are.same({}, h:state("window-contents"))
      assert.are.same({}, h:state("merging-window-set"))
    end)

    it("keep sessions of different keys and gaps apart", function()
      local h = sessions()
      push(h, "a", 0, 0)
      push(h, "b", 5, 5)
      push(h, "a", 11, 11) -- gap of 11 > 10: a new session
      assert.are.same({ "a [0,10) 0", "b [5,15) 5", "a [11,21) 11" }, h:watermark(100))
    end)
  end)
end
