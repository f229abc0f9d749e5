-- The harness: one keyed process function driven by hand, record by
-- record, with its output and state laid open after every step. It is
-- Flink's KeyedOneInputStreamOperatorTestHarness made interactive, for the
-- REPL, workshops and specs. The function runs exactly as in a job (same
-- ctx, same state handles), as the single subtask owning every key group.

local config = require "eddy.config"
local context = require "eddy.context"
local core = require "eddy.core"
local opstate = require "eddy.opstate"
local savepoint = require "eddy.savepoint"
local stream = require "eddy.stream"

local M = {}

local Harness = {}
Harness.__index = Harness

local MIN = math.mininteger

-- The keyed state and operator states a harness starts from: those of
-- operator uid (or of the snapshot's only keyed operator) in the snapshot
-- at path or given, put into a backend as state_backend says. Returns
-- keyed (an eddy.Keyed of its own), the
-- operator states of a single subtask, and the uid.
local function restored_state(restore, uid, max_parallelism, state_backend)
  local snap, own = restore, false
  if type(restore) == "string" then
    snap, own = savepoint.open(restore, "eddy.harness: restore"), true
  elseif getmetatable(restore) == nil or getmetatable(restore).__name ~= "eddy.Snapshot" then
    error("eddy.harness: restore: expected a path or a Snapshot (h:snapshot(), eddy.savepoint.load)", 0)
  end
  local function fail(msg)
    if own then
      snap:close()
    end
    error("eddy.harness: restore: " .. msg, 0)
  end
  local keyed_uids = {}
  for _, op in ipairs(snap:operators()) do
    if op.keyed then
      keyed_uids[#keyed_uids + 1] = op.uid
    end
  end
  if uid == nil then
    if #keyed_uids ~= 1 then
      fail(("%s has %s keyed operators (%s): say which with uid = ..."):format(snap.path,
        #keyed_uids == 0 and "no" or tostring(#keyed_uids), table.concat(keyed_uids, ", ")))
    end
    uid = keyed_uids[1]
  end
  local op = snap._ops[uid]
  if not op or #op.keyed_files == 0 then
    fail(("%s has no keyed state of operator %q (its keyed operators: %s)"):format(snap.path, uid,
      #keyed_uids > 0 and table.concat(keyed_uids, ", ") or "none"))
  end
  if max_parallelism ~= nil and max_parallelism ~= op.max_parallelism then
    fail(("%s keeps %q with max parallelism %d, not %d: key groups cannot change"):format(snap.path,
      uid, op.max_parallelism, max_parallelism))
  end
  local ok, keyed = pcall(snap._fresh_keyed, snap, op, state_backend)
  if not ok then
    fail(keyed)
  end
  -- this operator's operator states (broadcast state), from every old
  -- subtask, handed out as to a single subtask
  local old = {}
  for _, e in ipairs(snap:_opstate_of(op)[uid] or {}) do
    old[e.subtask + 1] = type(e.value) == "table" and e.value.lists or nil
  end
  local lists = opstate.redistribute(old, op.parallelism, 1)[1]
  if own then
    snap:close()
  end
  return keyed, lists, uid, op.max_parallelism
end

function M.new(tbl)
  local conf = config.harness(tbl, 4)
  local self = setmetatable({}, Harness)
  self._fns = conf.process
  self._key = stream.key_selector(conf.key_by)
  local restored_lists
  if conf.restore ~= nil then
    local explicit_max = type(tbl) == "table" and tbl.max_parallelism or nil
    self._keyed, restored_lists, self._uid, self._max_parallelism =
      restored_state(conf.restore, conf.uid, explicit_max, conf.state_backend)
  else
    local keyed, err = core.keyed_new { max_parallelism = conf.max_parallelism,
                                        state_backend = conf.state_backend }
    if not keyed then
      error("eddy.harness: " .. err, 3)
    end
    self._keyed = keyed
    self._uid, self._max_parallelism = conf.uid or "harness", conf.max_parallelism
  end
  self._outputs, self._sides = {}, {}
  -- the harness's clocks: event time moves with h:watermark, processing
  -- time (always manual here) with h:advance_processing_time
  self._watermark, self._now = MIN, 0
  self._ctx = context.new {
    keyed = self._keyed,
    restored = conf.restore ~= nil,
    timestamp = function() return self._timestamp end,
    clock = {
      now = function() return self._now end,
      watermark = function() return self._watermark end,
      wake_at = function() end,
    },
  }
  local function emit(v)
    local o = self._outputs
    o[#o + 1] = { value = v, timestamp = self._out_ts }
  end
  self._out = (context.collector(emit,
    function(tag)
      return function(v)
        local list = self._sides[tag]
        if not list then
          list = {}
          self._sides[tag] = list
        end
        list[#list + 1] = v
      end
    end,
    function(v, ts)
      local before = self._out_ts
      self._out_ts = ts
      emit(v)
      self._out_ts = before
    end))
  self._driver = context.keyed_driver(self._fns, self._ctx, self._out,
    function(ts) self._out_ts = ts end)
  if self._fns.process_broadcast then
    -- keyed:connect(broadcast): the harness is one subtask of it
    self._ctx._connected = true
    self._ctx._opstate = opstate.new_store(restored_lists)
  end
  if self._fns.open then
    self._fns.open(self._ctx)
  end
  return self
end

function Harness:_check(what)
  if self._closed then
    error(("h:%s: the harness is closed"):format(what), 3)
  end
end

-- Runs f (which emits), then returns the values it emitted; a failure
-- leaves no key current.
function Harness:_step(f, ...)
  local before = #self._outputs
  local ok, err = pcall(f, ...)
  self._keyed:clear_key()
  self._timestamp = nil
  self._ctx._timer_ts, self._ctx._domain = nil, nil
  if not ok then
    error(err, 0)
  end
  local new = {}
  for i = before + 1, #self._outputs do
    new[#new + 1] = self._outputs[i].value
  end
  return new
end

-- Processes one record (with an optional timestamp), as a job would, and
-- returns what this record made the function emit (h:output() still has it
-- too), so that a REPL shows each step's effect at once.
function Harness:push(value, timestamp)
  self:_check("push")
  if value == nil then
    error("h:push: a record must not be nil", 2)
  end
  if timestamp ~= nil then
    local err
    timestamp, err = config.milliseconds(timestamp, "the timestamp")
    if timestamp == nil then
      error("h:push: " .. err, 2)
    end
  end
  local key = self._key(value)
  return self:_step(function()
    local ok, err = pcall(self._keyed.set_key, self._keyed, key)
    if not ok then
      error("key_by: " .. err, 0)
    end
    self._timestamp = timestamp
    self._out_ts = timestamp
    self._driver.process(value)
  end)
end

-- A record of the broadcast side, for a function with process_broadcast:
-- no key is current, and broadcast state may be written. Returns what it
-- emitted.
function Harness:push_broadcast(value, timestamp)
  self:_check("push_broadcast")
  local fn = self._fns.process_broadcast
  if not fn then
    error("h:push_broadcast: the process function has no process_broadcast", 2)
  end
  if value == nil then
    error("h:push_broadcast: a record must not be nil", 2)
  end
  if timestamp ~= nil then
    local err
    timestamp, err = config.milliseconds(timestamp, "the timestamp")
    if timestamp == nil then
      error("h:push_broadcast: " .. err, 2)
    end
  end
  local ctx = self._ctx
  return self:_step(function()
    self._timestamp = timestamp
    self._out_ts = timestamp
    ctx._on_broadcast = true
    local ok, err = pcall(fn, ctx, value, self._out)
    ctx._on_broadcast = false
    if not ok then
      error(err, 0)
    end
  end)
end

-- h:broadcast_state() -> { [name] = { [key] = value } };
-- h:broadcast_state(name) -> { [key] = value } (keys that are tables come
-- back as copies).
function Harness:broadcast_state(name)
  self:_check("broadcast_state")
  local store = self._ctx._opstate
  if not store then
    error("h:broadcast_state: the process function has no process_broadcast", 2)
  end
  -- restored states the function has not asked for yet show too
  for n, r in pairs(store._restored) do
    if r.mode == "broadcast" then
      store:broadcast(n, function() return self._ctx._on_broadcast end, "h:broadcast_state")
    end
  end
  local function as_table(s)
    local t = {}
    for k, v in s:pairs() do
      t[k] = v
    end
    return t
  end
  if name ~= nil then
    local s = store._lists[name]
    return s and s._mode == "broadcast" and as_table(s) or {}
  end
  local all = {}
  for n, s in pairs(store._lists) do
    if s._mode == "broadcast" then
      all[n] = as_table(s)
    end
  end
  return all
end

-- Advances event time to ts: every event-time timer at ts or before fires,
-- in order. A watermark that does not move forward changes nothing.
-- Returns what the timers emitted.
function Harness:watermark(ts)
  self:_check("watermark")
  local err
  ts, err = config.milliseconds(ts, "the watermark")
  if ts == nil then
    error("h:watermark: " .. err, 2)
  end
  if ts <= self._watermark then
    return {}
  end
  self._watermark = ts
  return self:_step(self._driver.advance_watermark, ts)
end

-- Moves processing time to ms (set) or by ms (advance): every
-- processing-time timer due by then fires, in order. Returns what they
-- emitted.
function Harness:set_processing_time(ms)
  self:_check("set_processing_time")
  local err
  ms, err = config.milliseconds(ms, "the time")
  if ms == nil then
    error("h:set_processing_time: " .. err, 2)
  end
  if ms < self._now then
    error(("h:set_processing_time: processing time cannot go back (from %d to %d)"):format(self._now, ms), 2)
  end
  self._now = ms
  return self:_step(self._driver.fire_processing, ms)
end

function Harness:advance_processing_time(ms)
  if math.type(ms) ~= "integer" or ms < 0 or ms > math.maxinteger - self._now then
    error(("h:advance_processing_time: expected a whole number of milliseconds from 0 to %d, got %s")
      :format(math.maxinteger - self._now, tostring(ms)), 2)
  end
  return self:set_processing_time(self._now + ms)
end

function Harness:current_watermark()
  return self._watermark
end

function Harness:current_processing_time()
  return self._now
end

-- The records emitted since the last call; with {timestamps = true}, each
-- as {value =, timestamp =} (timestamp nil when the record has none).
function Harness:output(opts)
  local o = self._outputs
  self._outputs = {}
  local with_ts = type(opts) == "table" and opts.timestamps
  for i, r in ipairs(o) do
    o[i] = with_ts and r or r.value
  end
  return o
end

function Harness:side_output(tag)
  local o = self._sides[tag] or {}
  self._sides[tag] = nil
  return o
end

-- h:state() -> { [name] = rows }; h:state(name) -> rows;
-- h:state(name, key) -> that key's value. A row is
-- { key =, key_group =, namespace = (windows only), value = }; with a
-- namespace, h:state(name, key, namespace) is that window's value.
function Harness:state(name, key, namespace)
  self:_check("state")
  local keyed = self._keyed
  if name == nil then
    local all = {}
    for _, s in ipairs(keyed:states()) do
      all[s.name] = keyed:rows(s.name)
    end
    return all
  end
  local rows = keyed:rows(name)
  if key == nil then
    return rows
  end
  return savepoint.value_in(rows, key, namespace)
end

-- Pending timers in firing order, event time first:
-- { {kind = "event" | "processing", key =, namespace =, ts =, key_group =} }
function Harness:timers()
  self:_check("timers")
  return self._keyed:timers()
end

-- What h:snapshot() and h:savepoint() hold: the harness as operator uid,
-- subtask 0 of 1, as a job's savepoint would have it.
function Harness:_operator()
  local store = self._ctx._opstate
  local lists = store and store:snapshot()
  return {
    uid = self._uid, vertex = "harness " .. self._uid, job_name = "harness",
    job_id = core.random_hex(16), max_parallelism = self._max_parallelism,
    keyed = core.keyed_snapshot(self._keyed),
    operators = lists and next(lists) and { [self._uid] = { lists = lists } } or nil,
  }
end

-- h:snapshot() -> a Snapshot in memory (as eddy.savepoint.load gives),
-- which eddy.harness{restore = snap} starts from.
function Harness:snapshot()
  self:_check("snapshot")
  return savepoint.of_operator(self:_operator())
end

-- h:savepoint(dir) -> the path of a savepoint of the harness's state in
-- dir: `eddy inspect` reads it, a harness or a job with a keyed operator
-- of the same uid restores from it.
function Harness:savepoint(dir)
  self:_check("savepoint")
  if type(dir) ~= "string" or dir == "" then
    error("h:savepoint: expected a folder", 2)
  end
  local ok, path = pcall(savepoint.write_operator, dir, self:_operator())
  if not ok then
    error("h:savepoint: " .. tostring(path), 2)
  end
  return path
end

function Harness:close()
  if self._closed then
    return
  end
  self._closed = true
  if self._fns.close then
    self._fns.close(self._ctx)
  end
  self._keyed:close()
end

function Harness:__tostring()
  return "eddy.Harness"
end

return M
