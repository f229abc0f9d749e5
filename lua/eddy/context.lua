-- The `ctx` and `out` objects that process functions receive, shared by
-- jobs and the harness so that a function behaves the same in both.
--
-- A ctx wraps one subtask's keyed state (an eddy.Keyed from the C core,
-- whose current key the runtime sets before each record) and hands out
-- state handles. Handles are created once per name and kind and reused:
-- asking for `ctx:value_state("count")` on every record costs a table
-- lookup, not a registration.

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
    handle = self._keyed:state(kind, name, desc)
    cache[name] = handle
    return handle
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

function Context:timestamp()
  return self._timestamp()
end

function Context:subtask()
  return self._subtask
end

function Context:parallelism()
  return self._parallelism
end

local function unavailable(what)
  return function()
    error(what .. " is not available in this version of eddy", 2)
  end
end

Context.operator_list_state = unavailable("ctx:operator_list_state")
Context.union_list_state = unavailable("ctx:union_list_state")
Context.broadcast_state = unavailable("ctx:broadcast_state")
Context.is_restored = function() return false end

local no_timers = setmetatable({}, {
  __index = function(_, name)
    return unavailable("ctx.timers:" .. tostring(name))
  end,
})

-- opts: keyed (eddy.Keyed or nil), subtask (0-based), parallelism,
-- timestamp (function returning the current record's timestamp or nil)
function M.new(opts)
  return setmetatable({
    _keyed = opts.keyed,
    _subtask = opts.subtask or 0,
    _parallelism = opts.parallelism or 1,
    _timestamp = opts.timestamp or function() return nil end,
    _states = { value = {}, list = {}, map = {}, reducing = {}, aggregating = {} },
    timers = no_timers,
  }, Context)
end

-- `out` for a process function: out(v), out:collect(v), out:side(tag, v).
-- emit sends to the main output; side(tag) returns the function for a side
-- output, or nil when nothing consumes it (then records are dropped, as in
-- Flink when no one asked for the side output).
function M.collector(emit, side)
  local out = {}
  local function collect(_, v)
    if v == nil then
      error("out: a record must not be nil", 2)
    end
    emit(v)
  end
  out.collect = collect
  function out:side(tag, v)
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
  return setmetatable(out, { __call = collect })
end

return M
