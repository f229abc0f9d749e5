-- Timers through the harness (SEMANTICS.md section 3): identity and
-- deduplication, deletion, firing when the watermark reaches them, timers
-- registered in on_timer, the deterministic order of ties, processing time
-- on the manual clock, and what on_timer sees. On every backend: timers
-- live beside the keyed state, and on_timer reads and writes it.

local backends = require "backends"
local eddy = require "eddy"

-- A process function driven by the records themselves:
--   {k =, event = {ts...}, processing = {ts...}, delete_event = {ts...}}
-- and an on_timer that reports what it saw, and can chain more timers.
local function timer_fns(log)
  return {
    process = function(ctx, r)
      for _, ts in ipairs(r.event or {}) do ctx.timers:register_event_time(ts) end
      for _, ts in ipairs(r.processing or {}) do ctx.timers:register_processing_time(ts) end
      for _, ts in ipairs(r.delete_event or {}) do ctx.timers:delete_event_time(ts) end
      for _, ts in ipairs(r.delete_processing or {}) do ctx.timers:delete_processing_time(ts) end
    end,
    on_timer = function(ctx, ts, out)
      log[#log + 1] = { key = ctx:key(), ts = ts, at = ctx:timestamp(), domain = ctx:time_domain(),
                        wm = ctx.timers:current_watermark() }
      out(ctx:key() .. "@" .. ts)
      if ctx:key() == "chain" and ts < 130 then
        ctx.timers:register_event_time(ts + 10) -- due in this same advance
      end
    end,
  }
end

for _, backend in ipairs(backends) do
  local function harness(log)
    return backends.harness(backend, { process = timer_fns(log), key_by = "k" })
  end

  describe("timers on the " .. backend .. " backend", function()
    it("fire when the watermark reaches their time, not before, in time order", function()
      local log = {}
      local h = harness(log)
      h:push { k = "a", event = { 20, 10 } }
      assert.are.same({}, h:watermark(9))
      assert.are.same({ "a@10" }, h:watermark(10)) -- exactly at the watermark
      assert.are.same({ "a@20" }, h:watermark(25))
      assert.are.same({ key = "a", ts = 10, at = 10, domain = "event", wm = 10 }, log[1])
      assert.are.same({}, h:timers())
    end)

    it("registered at or below the current watermark fire at the next advance", function()
      local h = harness({})
      h:watermark(100)
      h:push { k = "late", event = { 50, 100 } }
      assert.are.equal(2, #h:timers())
      assert.are.same({}, h:output())
      assert.are.same({ "late@50", "late@100" }, h:watermark(101))
    end)

    it("are one timer per (timestamp, key, namespace)", function()
      local h = harness({})
      h:push { k = "a", event = { 5, 5 } }
      h:push { k = "a", event = { 5 } }
      h:push { k = "b", event = { 5 } }
      assert.are.equal(2, #h:timers())
      -- a tie: key group order ("b" is in a lower key group than "a")
      assert.is_true(eddy.key_group("b") < eddy.key_group("a"))
      assert.are.same({ "b@5", "a@5" }, h:watermark(5))
    end)

    it("can be deleted, and deleting one that is not there does nothing", function()
      local h = harness({})
      h:push { k = "a", event = { 5, 6 }, processing = { 7 } }
      h:push { k = "a", delete_event = { 5, 99 }, delete_processing = { 7, 8 } }
      h:push { k = "b", delete_event = { 6 } } -- another key's timer
      assert.are.same({ { kind = "event", key = "a", ts = 6, key_group = eddy.key_group("a") } }, h:timers())
      assert.are.same({ "a@6" }, h:watermark(10))
      assert.are.same({}, h:set_processing_time(10))
    end)

    it("registered in on_timer and already due fire in the same advance", function()
      local h = harness({})
      h:push { k = "chain", event = { 100 } }
      assert.are.same({ "chain@100", "chain@110", "chain@120", "chain@130" }, h:watermark(1000))
    end)

    it("with equal timestamps fire by key group, then key bytes", function()
      local h = harness({})
      local keys = { "user_42", "a", "hello", "key-1", "zz", "b" }
      for _, k in ipairs(keys) do
        h:push { k = k, event = { 7 } }
      end
      table.sort(keys, function(x, y)
        local gx, gy = eddy.key_group(x), eddy.key_group(y)
        if gx ~= gy then return gx < gy end
        return eddy.encode(x) < eddy.encode(y)
      end)
      local want = {}
      for i, k in ipairs(keys) do
        want[i] = k .. "@7"
      end
      assert.are.same(want, h:watermark(7))
    end)

    it("fire in processing time as the manual clock moves, without a timestamp on their output", function()
      local log = {}
      local h = harness(log)
      h:push({ k = "p", processing = { 1000, 500 } }, 42)
      assert.are.same({ "p@500" }, h:advance_processing_time(600))
      assert.are.same({}, h:set_processing_time(999))
      assert.are.same({ "p@1000" }, h:set_processing_time(1000))
      assert.are.same({ key = "p", ts = 500, at = 500, domain = "processing", wm = math.mininteger }, log[1])
      local out = h:output { timestamps = true }
      assert.are.same({ { value = "p@500" }, { value = "p@1000" } }, out)
      assert.has_error(function() h:set_processing_time(10) end,
        "h:set_processing_time: processing time cannot go back (from 1000 to 10)")
    end)

    it("stamp an event-time timer's output with the timer's time", function()
      local h = harness({})
      h:push({ k = "a", event = { 30 } }, 10)
      h:watermark(40)
      assert.are.same({ { value = "a@30", timestamp = 30 } }, h:output { timestamps = true })
    end)

    it("need a current key and whole milliseconds", function()
      local handle
      local h = backends.harness(backend, {
        key_by = "k",
        process = {
          open = function(ctx) handle = ctx end,
          process = function(ctx, r) ctx.timers:register_event_time(r.ts) end,
        },
      })
      local ok, err = pcall(handle.timers.register_event_time, handle.timers, 5)
      assert.is_false(ok)
      assert.matches("no current key", err, 1, true)
      ok, err = pcall(h.push, h, { k = 1, ts = 1.5 })
      assert.is_false(ok)
      assert.matches("ctx.timers:register_event_time: the time is not a whole number of milliseconds: 1.5", err, 1, true)
    end)
  end)
end
