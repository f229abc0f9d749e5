-- Streams: what a job script writes (`src:map(f):key_by("k"):process(...)`).
-- Each method adds a node to the job's graph and returns a new stream over
-- it; nothing runs until job:run(). The nodes are compiled into vertices of
-- chained operators by eddy.plan.
--
-- A node has a `kind`:
--   "source", "op"  physical: they run; `build(env)` makes one subtask's
--                   instance of them (see eddy.plan for env)
--   "partition"     virtual: how records reach the next operator
--                   (keyed, rebalance, broadcast)
--   "union"         virtual: several inputs feeding one operator
--   "side"          virtual: the side output `tag` of an operator

local opstate = require "eddy.opstate"
local context = require "eddy.context"
local inspect = require "eddy.inspect"

local M = {}

local Stream = {}
Stream.__index = Stream
local KeyedStream = setmetatable({}, { __index = Stream })
KeyedStream.__index = KeyedStream
-- stream:broadcast(): every record goes to every subtask of what follows;
-- connected to a (keyed) stream it feeds process_broadcast.
local BroadcastStream = setmetatable({}, { __index = Stream })
BroadcastStream.__index = BroadcastStream
M.Stream, M.KeyedStream, M.BroadcastStream = Stream, KeyedStream, BroadcastStream

local function is_stream(v)
  local mt = getmetatable(v)
  return mt == Stream or mt == KeyedStream or mt == BroadcastStream
end

local function wrap(job, node, mt)
  return setmetatable({ _job = job, _node = node }, mt or Stream)
end
M.wrap = wrap

local function check_fn(f, what, level)
  if type(f) ~= "function" then
    error(("%s: expected a function, got %s"):format(what, type(f)), (level or 2) + 1)
  end
end

local function check_uid(uid, what, level)
  if type(uid) ~= "string" or uid == "" then
    error(("%s: the first argument must be the operator's uid (a non-empty string), got %s")
      :format(what, inspect(uid, { oneline = true })), (level or 2) + 1)
  end
end

-- Adds an operator node fed by this stream.
function Stream:_op(name, build, extra)
  local node = { kind = "op", name = name, build = build, inputs = { self._node } }
  for k, v in pairs(extra or {}) do
    node[k] = v
  end
  self._job:_add(node)
  return wrap(self._job, node)
end

-- A short text of a record for error messages.
local function show(v)
  local s = inspect(v, { oneline = true })
  if #s > 120 then
    s = s:sub(1, 117) .. "..."
  end
  return s
end
M.show = show

function Stream:map(f)
  check_fn(f, "map")
  return self:_op("map", function(env)
    local emit = env.emit
    return {
      push = function(v)
        local r = f(v)
        if r == nil then
          error("map: the function returned nil for " .. show(v)
            .. " (use filter or flat_map to drop records)", 0)
        end
        emit(r)
      end,
    }
  end)
end

function Stream:filter(f)
  check_fn(f, "filter")
  return self:_op("filter", function(env)
    local emit = env.emit
    return {
      push = function(v)
        if f(v) then
          emit(v)
        end
      end,
    }
  end)
end

function Stream:flat_map(f)
  check_fn(f, "flat_map")
  return self:_op("flat_map", function(env)
    local out, seal = context.collector(env.emit, env.side)
    return { push = function(v) f(v, out) end, finish = seal }
  end)
end

-- Returns the key selector for key_by: a field name or a function. A nil
-- key is refused here, with the record, rather than deep in the runtime.
local function key_selector(key)
  if type(key) == "string" or math.type(key) == "integer" then
    local field = key
    return function(v)
      local k = type(v) == "table" and v[field] or nil
      if k == nil then
        error(("key_by(%s): the record has no field %s: %s")
          :format(show(field), show(field), show(v)), 0)
      end
      return k
    end, show(field), field
  elseif type(key) == "function" then
    return function(v)
      local k = key(v)
      if k == nil then
        error("key_by: the key function returned nil for " .. show(v), 0)
      end
      return k
    end, "a function"
  end
  error(("key_by: expected a field name or a function, got %s"):format(type(key)), 3)
end
M.key_selector = key_selector

function Stream:key_by(key)
  local selector, desc, field = key_selector(key)
  local node = { kind = "partition", part = "keyed", key = selector, key_desc = desc, key_field = field,
                 name = "key_by(" .. desc .. ")", inputs = { self._node } }
  self._job:_add(node)
  return wrap(self._job, node, KeyedStream)
end

function Stream:rebalance()
  local node = { kind = "partition", part = "rebalance", name = "rebalance", inputs = { self._node } }
  self._job:_add(node)
  return wrap(self._job, node)
end

function Stream:union(...)
  local inputs = { self._node }
  for i = 1, select("#", ...) do
    local other = select(i, ...)
    if not is_stream(other) then
      error(("union: argument %d is not a stream"):format(i), 2)
    end
    if other._job ~= self._job then
      error(("union: argument %d belongs to another job"):format(i), 2)
    end
    inputs[#inputs + 1] = other._node
  end
  local node = { kind = "union", name = "union", inputs = inputs }
  self._job:_add(node)
  return wrap(self._job, node)
end

function Stream:broadcast()
  local node = { kind = "partition", part = "broadcast", name = "broadcast", inputs = { self._node } }
  self._job:_add(node)
  return wrap(self._job, node, BroadcastStream)
end

function Stream:side_output(tag)
  if tag == nil then
    error("side_output: a tag is required", 2)
  end
  local n = self._node
  if n.kind ~= "op" then
    error("side_output: only an operator's stream has side outputs", 2)
  end
  local node = { kind = "side", tag = tag, name = "side_output(" .. show(tag) .. ")", inputs = { n } }
  self._job:_add(node)
  return wrap(self._job, node)
end

function Stream:uid(uid)
  check_uid(uid, "uid")
  local n = self._node
  if n.kind ~= "op" and n.kind ~= "source" then
    error("uid: set the uid on an operator, not on a " .. n.kind, 2)
  end
  n.uid = uid
  return self
end

function Stream:name(label)
  if type(label) ~= "string" then
    error("name: expected a string", 2)
  end
  self._node.label = label
  return self
end

function Stream:parallelism(n)
  if math.type(n) ~= "integer" or n < 1 or n > 32768 then
    error(("parallelism: expected an integer from 1 to 32768, got %s"):format(show(n)), 2)
  end
  local node = self._node
  if node.kind ~= "op" and node.kind ~= "source" then
    error("parallelism: set it on an operator, not on a " .. node.kind
      .. " (call it after the next operator)", 2)
  end
  if node.max_parallelism_one and n > 1 then
    error(("parallelism: %s is not a parallel source"):format(node.name), 2)
  end
  node.parallelism = n
  return self
end

-- Event time: each record's timestamp from a field or a function, and
-- watermarks from a strategy (eddy.watermarks.bounded(d), .monotonous(),
-- .none()); idleness marks the stream idle after that much processing time
-- without records, so it stops holding back the watermark downstream.
function Stream:assign_timestamps(opts)
  opts = require("eddy.time").check_assign_options(opts, 2)
  return self:_assign(opts)
end

-- assign_timestamps with options already checked (sources check their own).
function Stream:_assign(opts)
  local time = require "eddy.time"
  return self:_op("assign_timestamps", function(env)
    return time.assigner_instance(env, opts)
  end, { what = "assign_timestamps" })
end

-- Checks the functions of a process call: a table with a process function,
-- known names only, and none that this version cannot run.
local function check_process(uid, fns, known, unavailable)
  check_uid(uid, "process", 3)
  if type(fns) ~= "table" or type(fns.process) ~= "function" then
    error("process: expected a table with a process function", 3)
  end
  for k, v in pairs(fns) do
    if not known[k] then
      local names = {}
      for name in pairs(known) do
        names[#names + 1] = name
      end
      table.sort(names)
      error(("process: unknown function '%s' (expected %s)")
        :format(tostring(k), table.concat(names, ", ")), 3)
    elseif type(v) ~= "function" then
      error(("process: '%s' must be a function"):format(k), 3)
    elseif unavailable[k] then
      error(("process: %s is not available in this version of eddy"):format(unavailable[k]), 3)
    end
  end
end

local PROCESS = { open = true, process = true, close = true,
                  initialize_state = true, snapshot_state = true }
local KEYED_PROCESS = { open = true, process = true, close = true, on_timer = true,
                        initialize_state = true, snapshot_state = true }

-- Non-keyed process: a process function without keyed state.
function Stream:process(uid, fns)
  check_process(uid, fns, PROCESS, {})
  return self:_op("process " .. uid, function(env)
    return M.process_instance(env, fns)
  end, { uid = uid })
end

-- One subtask's instance of a process function (keyed or not). A keyed
-- one fires its event-time timers when a watermark arrives, before passing
-- the watermark on, and its processing-time timers when the subtask's
-- alarm rings, then sets the alarm for the next one.
function M.process_instance(env, fns, keyed)
  local ctx = env.ctx
  local out, seal = context.collector(env.emit, env.side, env.emit_at)
  local process = fns.process
  -- operator state: this subtask's share of what the old subtasks stored,
  -- handed out again if the parallelism changed (SEMANTICS.md section 6)
  local restored_lists
  local all = env.restored_all
  if all then
    local old = {}
    for j = 1, all.parallelism do
      old[j] = all[j] and all[j].lists or nil
    end
    restored_lists = opstate.redistribute(old, all.parallelism, env.task:parallelism())[env.task:index() + 1]
  end
  local store = opstate.new_store(restored_lists)
  ctx._opstate = store
  -- Flink calls initializeState before open
  if fns.initialize_state then
    fns.initialize_state(ctx)
  end
  if fns.open then
    fns.open(ctx)
  end
  local inst = {
    push = function(v) process(ctx, v, out) end,
    call = { process, ctx, out }, -- the same, without the extra call
    finish = seal,
    close = fns.close and function() fns.close(ctx) end,
    snapshot = function(id)
      if fns.snapshot_state then
        fns.snapshot_state(ctx, id)
      end
      local lists = store:snapshot()
      return next(lists) ~= nil and { lists = lists } or nil
    end,
  }
  if keyed then
    local driver = context.keyed_driver(fns, ctx, out, env.set_timestamp)
    -- processing-time timers restored from a checkpoint need the alarm
    -- set, as Flink's timer service does when it starts
    local first_due = driver.next_processing()
    if first_due then
      env.clock.wake_at(first_due)
    end
    function inst.watermark(wm)
      driver.advance_watermark(wm)
      env.emit_watermark(wm)
    end
    function inst.alarm(now)
      driver.fire_processing(now)
      local next_due = driver.next_processing()
      if next_due then
        env.clock.wake_at(next_due)
      end
    end
  end
  return inst
end

-- ---- keyed streams ----

local function keyed_op(self, name, uid, build)
  local node = { kind = "op", name = name, uid = uid, keyed = true, build = build,
                 inputs = { self._node } }
  self._job:_add(node)
  return wrap(self._job, node)
end

function KeyedStream:process(uid, fns)
  check_process(uid, fns, KEYED_PROCESS, {})
  return keyed_op(self, "process " .. uid, uid, function(env)
    return M.process_instance(env, fns, true)
  end)
end

-- Flink's keyed reduce: emits the running reduction of each key.
function KeyedStream:reduce(uid, f)
  check_uid(uid, "reduce")
  check_fn(f, "reduce")
  return keyed_op(self, "reduce " .. uid, uid, function(env)
    local state = env.ctx:value_state("reduce")
    local emit = env.emit
    return {
      push = function(v)
        local acc = state:value()
        if acc == nil then
          acc = v
        else
          acc = f(acc, v)
          if acc == nil then
            error("reduce: the function returned nil", 0)
          end
        end
        state:update(acc)
        emit(acc)
      end,
    }
  end)
end

-- Flink's keyed sum: the first record of a key, with `field` replaced by
-- the running sum (or the running sum itself for a stream of numbers).
function KeyedStream:sum(uid, field)
  check_uid(uid, "sum")
  return keyed_op(self, "sum " .. uid, uid, function(env)
    local state = env.ctx:value_state("sum")
    local emit = env.emit
    local function number_of(v)
      local n
      if field == nil then
        n = v
      elseif type(v) == "table" then
        n = v[field]
      end
      if type(n) ~= "number" then
        error(("sum(%s): %s has no number%s"):format(show(field), show(v),
          field == nil and "" or " in field " .. show(field)), 0)
      end
      return n
    end
    return {
      push = function(v)
        local acc = state:value()
        if acc == nil then
          number_of(v)
          acc = v
        elseif field == nil then
          acc = acc + number_of(v)
        else
          acc[field] = number_of(acc) + number_of(v)
        end
        state:update(acc)
        emit(acc)
      end,
    }
  end)
end

-- keyed:window(assigner) -> a windowed stream: allowed_lateness(d),
-- side_output_late(tag), then reduce, aggregate or process (eddy.windows).
function KeyedStream:window(assigner)
  local windows = require "eddy.windows"
  return windows.windowed(self, assigner, function(uid, kind, make_operator)
    check_uid(uid, "window " .. kind, 3)
    return keyed_op(self, ("window %s %s"):format(kind, uid), uid, function(env)
      return M.process_instance(env, make_operator(), true)
    end)
  end)
end

-- ---- connected streams: a stream and a broadcast stream ----

-- stream:connect(broadcast):process(uid, fns): Flink's (Keyed)Broadcast-
-- ProcessFunction. Records of the stream go to process (with their key,
-- keyed state and timers when the stream is keyed), records of the
-- broadcast stream to process_broadcast on every subtask, which alone may
-- write broadcast state.
local ConnectedStream = {}
ConnectedStream.__index = ConnectedStream
M.ConnectedStream = ConnectedStream

function Stream:connect(other)
  if getmetatable(other) ~= BroadcastStream then
    error("connect: expected a broadcast stream (stream:broadcast()), got "
      .. (is_stream(other) and "a stream that is not broadcast" or type(other)), 2)
  end
  if other._job ~= self._job then
    error("connect: the broadcast stream belongs to another job", 2)
  end
  return setmetatable({ _job = self._job, _main = self, _broadcast = other,
                        _keyed = getmetatable(self) == KeyedStream }, ConnectedStream)
end

local CONNECTED = { open = true, process = true, process_broadcast = true, close = true }
local KEYED_CONNECTED = { open = true, process = true, process_broadcast = true, close = true,
                          on_timer = true }

function ConnectedStream:process(uid, fns)
  check_process(uid, fns, self._keyed and KEYED_CONNECTED or CONNECTED, {})
  if type(fns.process_broadcast) ~= "function" then
    error("process: a connected stream needs a process_broadcast function too", 2)
  end
  local node = { kind = "op", name = "process " .. uid, uid = uid, keyed = self._keyed or nil,
                 connected = true, inputs = { self._main._node, self._broadcast._node } }
  node.build = function(env)
    return M.connected_instance(env, fns, self._keyed)
  end
  self._job:_add(node)
  return wrap(self._job, node)
end

-- One subtask's instance of a connected process function: push(v, input)
-- sends a record to process or process_broadcast by the input it came on
-- (env.broadcast_input[input]); broadcast state is kept in the operator
-- state store and goes into checkpoints with it.
function M.connected_instance(env, fns, keyed)
  local ctx = env.ctx
  ctx._connected = true -- before open: it may read broadcast state
  local inst = M.process_instance(env, { open = fns.open, close = fns.close, on_timer = fns.on_timer,
                                         process = fns.process }, keyed)
  local process, process_broadcast = fns.process, fns.process_broadcast
  local out = inst.call[3]
  local on_broadcast = env.broadcast_input
  inst.call = nil -- the input decides which function runs
  inst.push = function(v, input)
    if on_broadcast[input] then
      ctx._on_broadcast = true
      local ok, err = pcall(process_broadcast, ctx, v, out)
      ctx._on_broadcast = false
      if not ok then
        error(err, 0)
      end
    else
      process(ctx, v, out)
    end
  end
  return inst
end

return M
