-- Event time: watermark strategies and the operator that assigns
-- timestamps and generates watermarks (Flink's WatermarkStrategy and
-- TimestampsAndWatermarksOperator), SEMANTICS.md section 4.
--
-- A watermark W says that no record with a timestamp <= W is expected any
-- more. The bounded-out-of-orderness generator tracks the highest
-- timestamp seen and emits maxTs - delay - 1; "monotonous" is the same with
-- no delay. Watermarks leaving the operator strictly increase.
--
-- Emission is deterministic by default (eddy's choice 4): the watermark is
-- taken after every record, so results do not depend on timing. With the
-- job's watermark_interval it is taken every that much processing time, as
-- Flink's pipeline.auto-watermark-interval does.

local config = require "eddy.config"
local show = require("eddy.inspect")

local M = {}

local MIN = math.mininteger

local Strategy = {}
Strategy.__index = Strategy
function Strategy:__tostring()
  if self.kind == "none" then
    return "eddy.watermarks.none()"
  end
  return ("eddy.watermarks.bounded(%d)"):format(self.delay)
end

function M.bounded(delay)
  local ms = config.duration(delay, "eddy.watermarks.bounded", 3)
  return setmetatable({ kind = "bounded", delay = ms }, Strategy)
end

function M.monotonous()
  return setmetatable({ kind = "bounded", delay = 0 }, Strategy)
end

-- No watermarks at all (only the end of input's maximum passes).
function M.none()
  return setmetatable({ kind = "none" }, Strategy)
end

function M.is_strategy(x)
  return getmetatable(x) == Strategy
end

-- A generator: on_event(ts), current() -> the watermark it would emit now.
local function generator(strategy)
  if strategy.kind == "none" then
    return { on_event = function() end, current = function() return MIN end }
  end
  local delay = strategy.delay
  -- maxTs starts so that the first current() is exactly MIN, with no
  -- underflow, as in BoundedOutOfOrdernessWatermarks
  local max_ts = MIN + delay + 1
  return {
    on_event = function(ts)
      if ts > max_ts then
        max_ts = ts
      end
    end,
    current = function() return max_ts - delay - 1 end,
  }
end

local function show_record(v)
  local s = show(v, { oneline = true })
  return #s > 120 and s:sub(1, 117) .. "..." or s
end

-- The timestamp of a record: a field holding milliseconds, or a function.
local function extractor(timestamp)
  if type(timestamp) == "function" then
    return function(v)
      local ts = timestamp(v)
      if type(ts) ~= "number" then
        return nil, ("the timestamp function returned %s for %s"):format(
          ts == nil and "nil" or show_record(ts), show_record(v))
      end
      return ts
    end
  end
  local field = timestamp
  return function(v)
    local ts = type(v) == "table" and v[field] or nil
    if type(ts) ~= "number" then
      return nil, ("the record has no number in field %s: %s"):format(show_record(field), show_record(v))
    end
    return ts
  end
end

-- Builds one subtask's instance of the assign_timestamps operator.
function M.assigner_instance(env, opts)
  local extract = extractor(opts.timestamp)
  local gen = generator(opts.watermarks)
  local skip = opts.on_error == "skip"
  local idleness = opts.idleness
  local interval = env.config.watermark_interval
  local clock, emit, emit_watermark, emit_status = env.clock, env.emit, env.emit_watermark, env.emit_status
  local report = env.report
  local last_emitted = MIN
  local idle = false
  local last_record_at = clock.now()
  local next_periodic = interval and last_record_at + interval

  local function emit_current()
    local wm = gen.current()
    if wm > last_emitted then
      last_emitted = wm
      emit_watermark(wm)
    end
  end

  if next_periodic then
    clock.wake_at(next_periodic)
  end
  if idleness then
    clock.wake_at(last_record_at + idleness + 1)
  end

  local inst = {}

  function inst.push(v)
    local ts, err = extract(v)
    if ts ~= nil then
      ts, err = config.milliseconds(ts, "the timestamp of " .. show_record(v))
    end
    if ts == nil then
      if not skip then
        error("assign_timestamps: " .. err, 0)
      end
      report.skipped = (report.skipped or 0) + 1
      report.first_skipped = report.first_skipped or err
      return
    end
    if idleness then
      last_record_at = clock.now()
      clock.wake_at(last_record_at + idleness + 1)
      if idle then
        idle = false
        emit_status(false)
      end
    end
    env.set_timestamp(ts)
    gen.on_event(ts)
    emit(v)
    if not interval then
      emit_current()
    end
  end

  -- Upstream event time stops here (this operator makes its own), except
  -- for the end of input's maximum watermark.
  function inst.watermark(wm)
    if wm == math.maxinteger and wm > last_emitted then
      last_emitted = wm
      emit_watermark(wm)
    end
  end

  function inst.status() end

  -- The task keeps one wake-up time for all its operators and forgets it
  -- once it fires, so every alarm re-arms what is still due later.
  function inst.alarm(now)
    if next_periodic then
      if now >= next_periodic then
        emit_current()
        next_periodic = now + interval
      end
      clock.wake_at(next_periodic)
    end
    -- idle once more than `idleness` of processing time has passed without
    -- a record (Flink notices at its next periodic check; eddy at once)
    if idleness and not idle then
      if now - last_record_at > idleness then
        idle = true
        emit_status(true)
      else
        clock.wake_at(last_record_at + idleness + 1)
      end
    end
  end

  return inst
end

local assign_opts = {
  timestamp = config.one_of_types { "string", "number", "function" },
  watermarks = function() end, -- checked below: a strategy object
  idleness = config.duration(),
  on_error = config.enum { "fail", "skip" },
}

-- Validates assign_timestamps options (`where` names the call in messages);
-- returns the normalised copy.
function M.check_assign_options(opts, level, where)
  where = where or "assign_timestamps"
  if type(opts) ~= "table" then
    error(where .. ": expected a table of options", level + 1)
  end
  local w = opts.watermarks
  local rest = {}
  for k, v in pairs(opts) do
    if k ~= "watermarks" then
      rest[k] = v
    end
  end
  local checked = config.check_options(rest, {
    timestamp = assign_opts.timestamp, idleness = assign_opts.idleness, on_error = assign_opts.on_error,
  }, where, level + 1)
  if checked.timestamp == nil then
    error(where .. ": timestamp is required (a field name or a function)", level + 1)
  end
  if w ~= nil and not M.is_strategy(w) then
    error(where .. ": watermarks: expected eddy.watermarks.bounded(d), .monotonous() or .none()", level + 1)
  end
  if checked.idleness ~= nil and checked.idleness <= 0 then
    error(where .. ": idleness: must be more than 0ms", level + 1)
  end
  checked.watermarks = w or M.none()
  return checked
end

return M
