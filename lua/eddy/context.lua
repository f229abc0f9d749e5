-- The `ctx` and `out` objects that process functions receive, shared by
-- jobs and the harness so that a function behaves the same in both.
--
-- A ctx wraps one subtask's keyed state (an eddy.Keyed from the C core,
-- whose current key the runtime sets before each record) and hands out
-- state handles. Handles are created once per name and kind and reused:
-- asking for `ctx:value_state("count")` on every record costs a table
-- lookup, not a registration.

local config = require "eddy.config"
local core = require "eddy.core"

local M = {}

local Context = {}
Context.__index = Context

local function describe(kind, spec)
  if type(spec) == "string" then
    return spec, {}
  end
  if type(spec) ~= "table" then
    error(("ctx:%s_state: expected a name or a table with a name, got %s"):format(kind, type(spec)), 3)
  end
  local name = spec.name
  if type(name) ~= "string" or name == "" then
    error(("ctx:%s_state: the state needs a name (a non-empty string)"):format(kind), 3)
  end
  if spec.ttl ~= nil then
    error(("ctx:%s_state('%s'): state TTL is not available in this version of eddy"):format(kind, name), 3)
  end
  return name, spec
end

local function state_getter(kind, required)
  return function(self, spec)
    local cache = self._states[kind]
    local handle = type(spec) == "string" and cache[spec]
    if handle then
      return handle
    end
    local name, desc = describe(kind, spec)
    handle = cache[name]
    if handle then
      return handle
    end
    if not self._keyed then
      error(("ctx:%s_state('%s'): keyed state needs a keyed stream (use key_by before process)"):format(kind, name), 2)
    end
    for _, fn in ipairs(required) do
      if type(desc[fn]) ~= "function" then
        error(("ctx:%s_state('%s'): '%s' must be a function"):format(kind, name, fn), 2)
      end
    end
    local ok, made = pcall(self._keyed.state, self._keyed, kind, name, desc)
    if not ok then
      error(("ctx:%s_state('%s'): %s"):format(kind, name, made), 2)
    end
    cache[name] = made
    return made
  end
end

Context.value_state = state_getter("value", {})
Context.list_state = state_getter("list", {})
Context.map_state = state_getter("map", {})
Context.reducing_state = state_getter("reducing", { "reduce" })
Context.aggregating_state = state_getter("aggregating", { "create", "add" })

function Context:key()
  local keyed = self._keyed
  return keyed and keyed:key()
end

-- The record's timestamp in process; the timer's time in on_timer.
function Context:timestamp()
  local ts = self._timer_ts
  if ts ~= nil then
    return ts
  end
  return self._timestamp()
end

-- In on_timer, "event" or "processing" (Flink's OnTimerContext.timeDomain).
function Context:time_domain()
  return self._domain
end

function Context:subtask()
  return self._subtask
end

function Context:parallelism()
  return self._parallelism
end

-- eddy's extension for windows and other namespaced state: state handles
-- and timers act on (current key, namespace); nil is no namespace. The
-- namespace goes back to nil before every record, and is the timer's
-- namespace in on_timer.
function Context:namespace()
  return self._keyed and self._keyed:namespace()
end

function Context:set_namespace(ns)
  if not self._keyed then
    error("ctx:set_namespace: namespaces need a keyed stream", 2)
  end
  self._keyed:set_namespace(ns)
end

local function unavailable(what)
  return function()
    error(what .. " is not available in this version of eddy", 2)
  end
end

-- Operator state (Flink's OperatorStateStore): list states of this
-- subtask, not of a key. On a restore at another parallelism, split lists
-- are cut into chunks and union lists go to everyone (eddy.opstate).
local function operator_state(self, name, mode, where)
  if not self._opstate then
    error(where .. ": operator state belongs to the operators of a job (not the harness)", 3)
  end
  return self._opstate:list(name, mode, where)
end

function Context:operator_list_state(name)
  return operator_state(self, name, "split", "ctx:operator_list_state")
end

function Context:union_list_state(name)
  return operator_state(self, name, "union", "ctx:union_list_state")
end

-- Broadcast state (Flink's getBroadcastState): a map of which every
-- subtask of a connected operator holds a copy. It may change only in
-- process_broadcast, where all subtasks see the same records; process
-- reads it (Flink's ReadOnlyContext).
function Context:broadcast_state(name)
  if not self._opstate or not self._connected then
    error("ctx:broadcast_state: broadcast state belongs to the process function of a stream "
      .. "connected to a broadcast stream (keyed:connect(stream:broadcast()):process)", 2)
  end
  local ctx = self
  return self._opstate:broadcast(name, function() return ctx._on_broadcast end,
    "ctx:broadcast_state")
end

-- Flink's applyToKeyedState, in process_broadcast: calls fn(key, state)
-- for every key that has a value in the keyed state `name` of that kind,
-- with that key current, e.g.
--   ctx:apply_to_keyed_state("map", "items", function(key, items) items:clear() end)
local APPLY_KINDS = { value = true, list = true, map = true, reducing = true, aggregating = true }

function Context:apply_to_keyed_state(kind, spec, fn)
  if not self._on_broadcast then
    error("ctx:apply_to_keyed_state: only in process_broadcast (process has the record's key)", 2)
  end
  if not APPLY_KINDS[kind] then
    error(("ctx:apply_to_keyed_state: the kind must be value, list, map, reducing or "
      .. "aggregating, got %s"):format(tostring(kind)), 2)
  end
  if type(fn) ~= "function" then
    error("ctx:apply_to_keyed_state: the last argument must be a function(key, state)", 2)
  end
  local state = self[kind .. "_state"](self, spec)
  local keyed = self._keyed
  local name = state:name()
  local keys, seen = {}, {}
  -- the keys are taken first, so fn may clear state as it goes; only state
  -- outside a namespace counts (windows keep theirs in namespaces)
  for _, row in ipairs(keyed:rows(name)) do
    if row.namespace == nil then
      local bytes = core.encode(row.key)
      if not seen[bytes] then
        seen[bytes] = true
        keys[#keys + 1] = row.key
      end
    end
  end
  for _, key in ipairs(keys) do
    keyed:set_key(key)
    local ok, err = pcall(fn, key, state)
    keyed:clear_key()
    if not ok then
      error(err, 0)
    end
  end
end

-- Flink's isRestored(): the job started from a checkpoint (whether or not
-- this operator had state in it).
function Context:is_restored()
  return self._restored
end

-- ctx.timers: Flink's TimerService for the current key and namespace.
local Timers = {}
Timers.__index = Timers

local function check_time(ts, what)
  local ms, err = config.milliseconds(ts, "the time")
  if ms == nil then
    error(("ctx.timers:%s: %s"):format(what, err), 3)
  end
  return ms
end

function Timers:register_event_time(ts)
  self._keyed:register_timer("event", check_time(ts, "register_event_time"))
end

function Timers:delete_event_time(ts)
  self._keyed:delete_timer("event", check_time(ts, "delete_event_time"))
end

function Timers:register_processing_time(ts)
  ts = check_time(ts, "register_processing_time")
  self._keyed:register_timer("processing", ts)
  self._clock.wake_at(ts)
end

function Timers:delete_processing_time(ts)
  self._keyed:delete_timer("processing", check_time(ts, "delete_processing_time"))
end

-- math.mininteger until the first watermark arrives (Flink's Long.MIN_VALUE).
function Timers:current_watermark()
  return self._clock.watermark()
end

function Timers:current_processing_time()
  return self._clock.now()
end

local no_timers = setmetatable({}, {
  __index = function(_, name)
    return function()
      error("ctx.timers:" .. tostring(name) .. ": timers need a keyed stream (use key_by before process)", 2)
    end
  end,
})

-- opts: keyed (eddy.Keyed or nil), subtask (0-based), parallelism,
-- timestamp (function returning the current record's timestamp or nil),
-- clock { now = f, watermark = f, wake_at = f(ts) } for timers, restored
-- (the job started from a checkpoint)
function M.new(opts)
  local ctx = setmetatable({
    _keyed = opts.keyed,
    _subtask = opts.subtask or 0,
    _parallelism = opts.parallelism or 1,
    _timestamp = opts.timestamp or function() return nil end,
    _restored = opts.restored or false,
    _states = { value = {}, list = {}, map = {}, reducing = {}, aggregating = {} },
    timers = no_timers,
  }, Context)
  if opts.keyed and opts.clock then
    ctx.timers = setmetatable({ _keyed = opts.keyed, _clock = opts.clock }, Timers)
  end
  return ctx
end

-- Runs a keyed process function: records (whose key the caller has set)
-- and the timers that come due as event time or processing time advances.
-- set_timestamp(ts) stamps what the function emits: a record's output
-- carries the record's timestamp, an event-time timer's output the timer's
-- time, a processing-time timer's output none (as KeyedProcessOperator
-- does).
function M.keyed_driver(fns, ctx, out, set_timestamp)
  local keyed = ctx._keyed
  local process, on_timer = fns.process, fns.on_timer
  local driver = {}

  local function fire(kind, limit)
    while true do
      -- re-asked every time: on_timer may register timers that are due too
      local ts = keyed:pop_timer(kind, limit)
      if ts == nil then
        break
      end
      ctx._timer_ts, ctx._domain = ts, kind
      set_timestamp(kind == "event" and ts or nil)
      if on_timer then
        on_timer(ctx, ts, out)
      end
    end
    ctx._timer_ts, ctx._domain = nil, nil
    keyed:clear_key()
  end

  function driver.process(value)
    ctx._timer_ts, ctx._domain = nil, nil -- an on_timer that failed may have left them
    process(ctx, value, out)
  end

  function driver.advance_watermark(wm)
    fire("event", wm)
  end

  function driver.fire_processing(now)
    fire("processing", now)
  end

  function driver.next_processing()
    return keyed:peek_timer("processing")
  end

  return driver
end

-- `out` for a process function: out(v), out:collect(v [, ts]),
-- out:side(tag, v). emit sends to the main output; emit_at(v, ts) does so
-- with an explicit timestamp (the window operator stamps results with the
-- window's end); side(tag) returns the function for a side output, or nil
-- when nothing consumes it (then records are dropped, as in Flink when no
-- one asked for the side output).
--
-- Returns out and seal(): after seal() (the operator reached the end of its
-- input), using out is an error, so that an out kept by a user function
-- cannot slip records into a finished job.
function M.collector(emit, side, emit_at)
  local out = {}
  local sealed = false
  local function collect(_, v, ts)
    if sealed then
      error("out: this operator has finished; its out cannot be used any more", 2)
    end
    if v == nil then
      error("out: a record must not be nil", 2)
    end
    if ts ~= nil and emit_at then
      local ms, err = config.milliseconds(ts, "the timestamp")
      if ms == nil then
        error("out:collect: " .. err, 2)
      end
      emit_at(v, ms)
    else
      emit(v)
    end
  end
  out.collect = collect
  function out:side(tag, v)
    if sealed then
      error("out: this operator has finished; its out cannot be used any more", 2)
    end
    if tag == nil then
      error("out:side: the tag must not be nil", 2)
    end
    if v == nil then
      error("out:side: a record must not be nil", 2)
    end
    local f = side and side(tag)
    if f then
      f(v)
    end
  end
  return setmetatable(out, { __call = collect }), function() sealed = true end
end

return M
