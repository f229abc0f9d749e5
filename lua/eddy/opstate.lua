-- Operator state: list states that belong to an operator's subtask rather
-- than to a key (Flink's OperatorStateStore), and how a restore hands them
-- out when the parallelism changed (SEMANTICS.md section 6, after Flink's
-- RoundRobinOperatorStateRepartitioner).
--
-- Three modes per named state:
--   split      ctx:operator_list_state: the concatenation of every old
--              subtask's list, cut into contiguous chunks
--   union      ctx:union_list_state: every subtask gets the concatenation
--   broadcast  broadcast state: subtask i gets old subtask (i % old p)'s copy

local core = require "eddy.core"
local inspect = require "eddy.inspect"

local M = {}

-- A list state held in memory: what ctx:operator_list_state(name) returns.
local ListState = {}
ListState.__index = ListState

function ListState:get()
  local copy = {}
  for i, v in ipairs(self._items) do
    copy[i] = v
  end
  return copy
end

function ListState:add(v)
  if v == nil then
    error(self._name .. ":add: nil cannot be stored", 2)
  end
  self._items[#self._items + 1] = v
end

function ListState:add_all(values)
  for _, v in ipairs(values) do
    self:add(v)
  end
end

function ListState:update(values)
  self._items = {}
  self:add_all(values or {})
end

function ListState:clear()
  self._items = {}
end

function ListState:__tostring()
  return ("eddy.OperatorListState %q (%s, %d elements)"):format(self._name, self._mode, #self._items)
end

-- Broadcast state: a map that every subtask of an operator holds a copy
-- of, written only from the broadcast input (where every subtask sees the
-- same records, so the copies stay equal) and read everywhere. Keys may be
-- any storable value: entries are kept by the key's canonical encoding,
-- which also gives a stable order to iterate and to checkpoint in.

local BroadcastState = {}
BroadcastState.__index = BroadcastState

local function show(v)
  return inspect(v, { oneline = true })
end

local function encoded_key(self, k, what)
  if k == nil then
    error(("%s:%s: the key must not be nil"):format(self._name, what), 3)
  end
  local ok, bytes = pcall(core.encode, k)
  if not ok then
    error(("%s:%s: the key %s cannot be stored: %s"):format(self._name, what, show(k), bytes), 3)
  end
  return bytes
end

local function check_writable(self, what)
  if not self._writable() then
    error(("broadcast state %q:%s: broadcast state is read-only in process (write it in "
      .. "process_broadcast, where every subtask sees the same records)"):format(self._name, what), 3)
  end
end

function BroadcastState:get(k)
  local e = self._entries[encoded_key(self, k, "get")]
  return e and e[2]
end

function BroadcastState:contains(k)
  return self._entries[encoded_key(self, k, "contains")] ~= nil
end

function BroadcastState:put(k, v)
  check_writable(self, "put")
  local bytes = encoded_key(self, k, "put")
  if v == nil then
    error(("%s:put: the value must not be nil (use remove)"):format(self._name), 2)
  end
  local ok, err = pcall(core.encode, v)
  if not ok then
    error(("%s:put: the value for key %s cannot be stored: %s"):format(self._name, show(k), err), 2)
  end
  if self._entries[bytes] == nil then
    self._count = self._count + 1
  end
  self._entries[bytes] = { k, v }
end

function BroadcastState:put_all(t)
  check_writable(self, "put_all")
  for k, v in pairs(t) do
    self:put(k, v)
  end
end

function BroadcastState:remove(k)
  check_writable(self, "remove")
  local bytes = encoded_key(self, k, "remove")
  if self._entries[bytes] ~= nil then
    self._entries[bytes] = nil
    self._count = self._count - 1
  end
end

function BroadcastState:clear()
  check_writable(self, "clear")
  self._entries, self._count = {}, 0
end

function BroadcastState:is_empty()
  return self._count == 0
end

-- The entries as { {key, value}, ... } in the order of their encoded keys.
function BroadcastState:_sorted()
  local order = {}
  for bytes in pairs(self._entries) do
    order[#order + 1] = bytes
  end
  table.sort(order)
  for i, bytes in ipairs(order) do
    order[i] = self._entries[bytes]
  end
  return order
end

-- for k, v in state:pairs() do ... end, in a stable order. Changing the
-- state while iterating is safe: the entries are taken first.
function BroadcastState:pairs()
  local sorted, i = self:_sorted(), 0
  return function()
    i = i + 1
    local e = sorted[i]
    if e then
      return e[1], e[2]
    end
  end
end

function BroadcastState:keys()
  local out = {}
  for i, e in ipairs(self:_sorted()) do
    out[i] = e[1]
  end
  return out
end

function BroadcastState:values()
  local out = {}
  for i, e in ipairs(self:_sorted()) do
    out[i] = e[2]
  end
  return out
end

function BroadcastState:__tostring()
  return ("eddy.BroadcastState %q (%d entries)"):format(self._name, self._count)
end

-- A subtask's operator states: the named lists it holds and the ones a
-- restore gave it.
local Store = {}
Store.__index = Store

-- restored: { [name] = { mode =, items = {...} } } for this subtask, or nil
function M.new_store(restored)
  return setmetatable({ _lists = {}, _restored = restored or {} }, Store)
end

function Store:list(name, mode, where)
  if type(name) ~= "string" or name == "" then
    error(where .. ": expected a state name", 3)
  end
  local s = self._lists[name]
  if s then
    if s._mode ~= mode then
      error(("%s: %q is already a %s state"):format(where, name, s._mode), 3)
    end
    return s
  end
  local r = self._restored[name]
  if r and r.mode ~= mode then
    error(("%s: %q was checkpointed as %s state, not %s"):format(where, name, r.mode, mode), 3)
  end
  s = setmetatable({ _name = name, _mode = mode, _items = r and r.items or {} }, ListState)
  self._lists[name] = s
  return s
end

-- The broadcast state `name`; writable() says whether it may be changed
-- now. A restored copy comes back as its entries, { {key, value}, ... }.
function Store:broadcast(name, writable, where)
  if type(name) ~= "string" or name == "" then
    error(where .. ": expected a state name", 3)
  end
  local s = self._lists[name]
  if s then
    if s._mode ~= "broadcast" then
      error(("%s: %q is already a %s state"):format(where, name, s._mode), 3)
    end
    return s
  end
  local r = self._restored[name]
  if r and r.mode ~= "broadcast" then
    error(("%s: %q was checkpointed as %s state, not broadcast"):format(where, name, r.mode), 3)
  end
  s = setmetatable({ _name = name, _mode = "broadcast", _entries = {}, _count = 0,
                     _writable = writable }, BroadcastState)
  for _, e in ipairs(r and r.items or {}) do
    s._entries[core.encode(e[1])] = { e[1], e[2] }
    s._count = s._count + 1
  end
  self._lists[name] = s
  return s
end

-- What goes into a checkpoint: { [name] = { mode =, items = } }.
function Store:snapshot()
  local out = {}
  for name, s in pairs(self._lists) do
    out[name] = { mode = s._mode, items = s._mode == "broadcast" and s:_sorted() or s:get() }
  end
  -- states restored but not asked for again stay, as in Flink
  for name, r in pairs(self._restored) do
    if out[name] == nil then
      out[name] = r
    end
  end
  return out
end

local function sorted_names(t)
  local names = {}
  for name in pairs(t) do
    names[#names + 1] = name
  end
  table.sort(names)
  return names
end

-- Hands out operator states on restore. old: an array, by old subtask
-- (1-based), of { [name] = { mode =, items = } } (nil for a subtask that
-- had none). Returns an array by new subtask of the same shape.
function M.redistribute(old, old_parallelism, new_parallelism)
  local by_name = {} -- name -> { mode =, per = { [old subtask] = items } }
  for i = 1, old_parallelism do
    for name, s in pairs(old[i] or {}) do
      local e = by_name[name]
      if not e then
        e = { mode = s.mode, per = {} }
        by_name[name] = e
      elseif e.mode ~= s.mode then
        error(("operator state %q is %s in one subtask and %s in another"):format(name, e.mode, s.mode), 0)
      end
      e.per[i] = s.items
    end
  end
  local new = {}
  for i = 1, new_parallelism do
    new[i] = {}
  end
  -- Flink walks split states in its HashMap's order, which is unspecified;
  -- eddy takes names in sorted order, so restores are reproducible.
  local start = 0
  for _, name in ipairs(sorted_names(by_name)) do
    local e = by_name[name]
    local all = {}
    for i = 1, old_parallelism do
      for _, v in ipairs(e.per[i] or {}) do
        all[#all + 1] = v
      end
    end
    if e.mode == "union" then
      for i = 1, new_parallelism do
        new[i][name] = { mode = "union", items = table.move(all, 1, #all, 1, {}) }
      end
    elseif e.mode == "broadcast" then
      -- every old subtask wrote the same copy; one that wrote none (it had
      -- finished) is made up for by the first that did
      local any
      for i = 1, old_parallelism do
        any = any or e.per[i]
      end
      for i = 1, new_parallelism do
        local copy = e.per[(i - 1) % old_parallelism + 1] or any or {}
        new[i][name] = { mode = "broadcast", items = table.move(copy, 1, #copy, 1, {}) }
      end
    elseif old_parallelism == new_parallelism then
      for i = 1, new_parallelism do
        new[i][name] = { mode = "split", items = e.per[i] or {} }
      end
    else
      local base, rem = #all // new_parallelism, #all % new_parallelism
      local next_start, at = start, 1
      for k = 0, new_parallelism - 1 do
        local sub = (k + start) % new_parallelism
        local n = base
        if rem > 0 then
          n = n + 1
          rem = rem - 1
        elseif rem == 0 then
          next_start = sub -- the first to get only `base` leads the next state
          rem = -1
        end
        new[sub + 1][name] = { mode = "split", items = table.move(all, at, at + n - 1, 1, {}) }
        at = at + n
      end
      start = next_start
    end
  end
  return new
end

return M
