-- The harness: one keyed process function driven by hand, record by
-- record, with its output and state laid open after every step. It is
-- Flink's KeyedOneInputStreamOperatorTestHarness made interactive, for the
-- REPL, workshops and specs. The function runs exactly as in a job (same
-- ctx, same state handles), as the single subtask owning every key group.

local config = require "eddy.config"
local context = require "eddy.context"
local core = require "eddy.core"
local stream = require "eddy.stream"

local M = {}

local Harness = {}
Harness.__index = Harness

local function unavailable(what)
  return function()
    error("h:" .. what .. " is not available in this version of eddy", 2)
  end
end

function M.new(tbl)
  local conf = config.harness(tbl, 3)
  if conf.state_backend.type ~= "heap" then
    error("eddy.harness: the " .. conf.state_backend.type .. " backend is not available in this version of eddy", 2)
  end
  if conf.restore ~= nil then
    error("eddy.harness: restore is not available in this version of eddy", 2)
  end
  local self = setmetatable({}, Harness)
  self._fns = conf.process
  self._key = stream.key_selector(conf.key_by)
  self._keyed = core.keyed_new { max_parallelism = conf.max_parallelism }
  self._outputs, self._sides = {}, {}
  self._ctx = context.new {
    keyed = self._keyed,
    timestamp = function() return self._timestamp end,
  }
  self._out = context.collector(
    function(v)
      local o = self._outputs
      o[#o + 1] = v
    end,
    function(tag)
      return function(v)
        local list = self._sides[tag]
        if not list then
          list = {}
          self._sides[tag] = list
        end
        list[#list + 1] = v
      end
    end)
  if self._fns.open then
    self._fns.open(self._ctx)
  end
  return self
end

-- Processes one record (with an optional timestamp), as a job would, and
-- returns what this record made the function emit (h:output() still has it
-- too), so that a REPL shows each step's effect at once.
function Harness:push(value, timestamp)
  if value == nil then
    error("h:push: a record must not be nil", 2)
  end
  if timestamp ~= nil and math.type(timestamp) ~= "integer" then
    error("h:push: the timestamp must be an integer (milliseconds)", 2)
  end
  local key = self._key(value)
  self._keyed:set_key(key)
  self._timestamp = timestamp
  local before = #self._outputs
  local ok, err = pcall(self._fns.process, self._ctx, value, self._out)
  self._keyed:clear_key()
  self._timestamp = nil
  if not ok then
    error(err, 0)
  end
  return table.move(self._outputs, before + 1, #self._outputs, 1, {})
end

-- The records emitted since the last call.
function Harness:output()
  local o = self._outputs
  self._outputs = {}
  return o
end

function Harness:side_output(tag)
  local o = self._sides[tag] or {}
  self._sides[tag] = nil
  return o
end

-- h:state() -> { [name] = rows }; h:state(name) -> rows;
-- h:state(name, key) -> that key's value. A row is
-- { key =, key_group =, namespace = (windows only), value = }.
function Harness:state(name, key)
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
  local want = core.encode(key)
  for _, r in ipairs(rows) do
    if r.namespace == nil and core.encode(r.key) == want then
      return r.value
    end
  end
  return nil
end

-- Pending timers; none can exist in this version (timers come with event
-- time), so the list is always empty.
function Harness:timers()
  return {}
end

Harness.watermark = unavailable("watermark")
Harness.advance_processing_time = unavailable("advance_processing_time")
Harness.set_processing_time = unavailable("set_processing_time")
Harness.snapshot = unavailable("snapshot")
Harness.savepoint = unavailable("savepoint")

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
