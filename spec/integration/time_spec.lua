-- Event time and processing time in whole jobs: watermarks from sources,
-- the minimum over inputs and idle inputs dropping out, timers firing before
-- the watermark moves on, the end of input, the manual clock with recorded
-- arrival times, periodic emission, and records without timestamps. Jobs at
-- parallelism 1 and 3 and the harness must agree.

local eddy = require "eddy"

local function run(build, config)
  local job = eddy.job(config or {})
  local c = build(job):collect()
  local result = job:run()
  return c:values(), result
end

describe("watermarks", function()
  it("are the minimum over inputs, and an idle input drops out until it is back", function()
    local A, B = {}, {
      { src = "b", at = 0, t = 0 }, { src = "b", at = 65000, t = 65000 }, { src = "b", at = 200000, t = 200000 },
    }
    for i = 0, 9 do
      A[#A + 1] = { src = "a", at = i * 10000, t = i * 10000 }
    end
    local opts = { arrival_time = "at", timestamp = "t", watermarks = eddy.watermarks.monotonous(),
                   idleness = "30s" }
    local out = run(function(job)
      return job:from_collection(A, opts):union(job:from_collection(B, opts))
        :key_by(function() return 1 end)
        :process("wm", { process = function(ctx, r, o)
          o(("%s@%d wm=%d"):format(r.src, r.t, ctx.timers:current_watermark()))
        end })
    end, { processing_time = "manual" })
    local MIN, MAX = math.mininteger, math.maxinteger
    assert.are.same({
      "a@0 wm=" .. MIN, "b@0 wm=" .. MIN, -- b has not spoken yet when a@0 goes by
      "a@10000 wm=-1", "a@20000 wm=-1", "a@30000 wm=-1", -- b holds the watermark back
      "a@40000 wm=29999", "a@50000 wm=39999", "a@60000 wm=49999", -- b idle since 30001
      "b@65000 wm=59999", -- b is back, but behind: it counts once it catches up
      "a@70000 wm=59999", "a@80000 wm=64999", "a@90000 wm=64999",
      "b@200000 wm=" .. MAX, -- a finished (maximum watermark) and b went idle again
    }, out)
  end)

  it("fire event-time timers before the watermark goes downstream", function()
    local out = run(function(job)
      return job:from_collection({ { k = "x", t = 10 }, { k = "x", t = 100 } },
          { timestamp = "t", watermarks = eddy.watermarks.monotonous() })
        :key_by("k")
        :process("first", {
          process = function(ctx, r) if r.t == 10 then ctx.timers:register_event_time(50) end end,
          on_timer = function(_, ts, o) o { k = "x", fired = ts } end,
        })
        :key_by("k")
        :process("second", { process = function(ctx, r, o)
          o { fired = r.fired, ts = ctx:timestamp(), wm = ctx.timers:current_watermark() }
        end })
    end)
    -- the timer's output arrives stamped 50 while the watermark that fired it
    -- (99) has not reached the next operator yet
    assert.are.same({ { fired = 50, ts = 50, wm = 9 } }, out)
  end)

  it("reach the maximum at the end of bounded input, firing every timer", function()
    local out = run(function(job)
      return job:from_collection({ { k = "a", t = 1 }, { k = "b", t = 2 } }, { timestamp = "t" })
        :key_by("k")
        :process("p", {
          process = function(ctx, r) ctx.timers:register_event_time(r.t + 1000000) end,
          on_timer = function(ctx, ts, o) o(ctx:key() .. "@" .. ts) end,
        })
    end)
    table.sort(out)
    assert.are.same({ "a@1000001", "b@1000002" }, out)
  end)

  it("can be emitted periodically in processing time", function()
    local records = {}
    for i = 1, 6 do
      records[i] = { k = 1, at = i * 40, t = i * 1000 }
    end
    local out = run(function(job)
      return job:from_collection(records, { arrival_time = "at", timestamp = "t",
                                            watermarks = eddy.watermarks.monotonous() })
        :key_by("k")
        :process("p", { process = function(ctx, r, o) o(("%d:%d"):format(r.t, ctx.timers:current_watermark())) end })
    end, { processing_time = "manual", watermark_interval = "100ms" })
    -- watermarks go out at processing time 100, 200: after t=2000 (at 80)
    -- and t=4000 (at 160)
    assert.are.same({ "1000:" .. math.mininteger, "2000:" .. math.mininteger, "3000:1999",
                      "4000:1999", "5000:3999", "6000:3999" }, out)
  end)
end)

describe("timestamps", function()
  it("missing or not numbers fail the job with what and where", function()
    local ok, err = pcall(run, function(job)
      return job:from_collection { { t = 1 }, { time = 2 } }:assign_timestamps { timestamp = "t" }
    end)
    assert.is_false(ok)
    assert.matches('assign_timestamps: the record has no number in field "t": {time = 2}', err, 1, true)
    ok, err = pcall(run, function(job)
      return job:from_collection { { t = 1.5 } }:assign_timestamps { timestamp = "t" }
    end)
    assert.is_false(ok)
    assert.matches("is not a whole number of milliseconds", err, 1, true)
  end)

  it("missing are skipped and counted with on_error = 'skip'", function()
    local real_stderr, said = io.stderr, {}
    io.stderr = { write = function(_, ...) said[#said + 1] = table.concat { ... } end }
    local ok, out, result = pcall(run, function(job)
      return job:from_collection { { t = 1 }, { t = "x" }, { t = 3 } }
        :assign_timestamps { timestamp = "t", on_error = "skip" }
    end)
    io.stderr = real_stderr
    assert.is_true(ok, out)
    assert.are.same({ { t = 1 }, { t = 3 } }, out)
    assert.are.equal(1, result.metrics.skipped.assign_timestamps)
    assert.matches("assign_timestamps: skipped 1", said[1], 1, true)
  end)
end)

describe("processing time in a job", function()
  it("follows recorded arrival times on the manual clock", function()
    local out = run(function(job)
      return job:from_collection({ { k = "a", at = 1000 }, { k = "a", at = 5000 }, { k = "a", at = 70000 } },
          { arrival_time = "at" })
        :key_by("k")
        :process("p", {
          process = function(ctx, r, o)
            o(("record %d now=%d"):format(r.at, ctx.timers:current_processing_time()))
            ctx.timers:register_processing_time(r.at + 60000)
          end,
          on_timer = function(ctx, ts, o)
            o(("timer %d now=%d ts=%s"):format(ts, ctx.timers:current_processing_time(), tostring(ctx:timestamp())))
          end,
        })
    end, { processing_time = "manual" })
    -- the timer at 61000 fires before the record arriving at 70000; the
    -- ones still pending when the input ends are dropped, as in Flink
    assert.are.same({ "record 1000 now=1000", "record 5000 now=5000", "timer 61000 now=61000 ts=61000",
                      "timer 65000 now=65000 ts=65000", "record 70000 now=70000" }, out)
  end)

  it("fires on the system clock while the job runs", function()
    -- records 200 ms apart (rate 5/s); a timer 10 ms after the first
    local out = run(function(job)
      return job:from_generator { count = 3, rate = 5, fn = function(i) return { k = "a", i = i } end }
        :key_by("k")
        :process("p", {
          process = function(ctx, r, o)
            if r.i == 1 then
              ctx.timers:register_processing_time(ctx.timers:current_processing_time() + 10)
            end
            o("record " .. r.i)
          end,
          on_timer = function(_, _, o) o("timer") end,
        })
    end)
    assert.are.same({ "record 1", "timer", "record 2", "record 3" }, out)
  end)

  it("needs the manual clock for arrival times", function()
    local job = eddy.job {}
    local ok, err = pcall(job.from_collection, job, { 1 }, { arrival_time = "at" })
    assert.is_false(ok)
    assert.matches('arrival_time needs the job\'s manual clock (processing_time = "manual")', err, 1, true)
  end)
end)

describe("the same windows", function()
  local orders = {}
  for i = 1, 300 do
    orders[i] = { user = "u" .. (i * 7 % 11), t = i * 997 % 50000 + (i // 30) * 20000, n = i }
  end

  local function windowed(p)
    local out = run(function(job)
      return job:from_collection(orders, { timestamp = "t", watermarks = eddy.watermarks.bounded("5s") })
        :key_by("user")
        :window(eddy.windows.tumbling("10s")):allowed_lateness("3s"):side_output_late("late")
        :reduce("sum", function(a, b) return { user = a.user, n = a.n + b.n } end)
    end, { parallelism = p })
    table.sort(out, function(a, b) return a.user < b.user or (a.user == b.user and a.n < b.n) end)
    return out
  end

  it("come out at parallelism 1 and 3 and in the harness", function()
    local one, three = windowed(1), windowed(3)
    assert.are.same(one, three)
    -- the harness, fed the same records and watermarks a job would send
    local h = eddy.harness { key_by = "user", process = eddy.windows.operator {
      assigner = eddy.windows.tumbling("10s"), allowed_lateness = "3s", late = "late",
      reduce = function(a, b) return { user = a.user, n = a.n + b.n } end,
    } }
    local max_ts = math.mininteger + 5001
    for _, o in ipairs(orders) do
      h:push(o, o.t)
      max_ts = math.max(max_ts, o.t)
      h:watermark(max_ts - 5001)
    end
    h:watermark(math.maxinteger)
    local from_harness = h:output()
    table.sort(from_harness, function(a, b) return a.user < b.user or (a.user == b.user and a.n < b.n) end)
    assert.are.same(one, from_harness)
    assert.is_true(#one > 20)
  end)
end)
