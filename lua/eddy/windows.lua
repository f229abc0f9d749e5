-- Windows, built the way Flink's WindowOperator builds them, on nothing but
-- eddy's public keyed state and timers (SEMANTICS.md section 5). Reading
-- this file is meant to show how windows work:
--
--  * An assigner maps a record's timestamp to windows [start, stop).
--    Tumbling and sliding windows start at ts - floorMod(ts - offset, size);
--    a session window is [ts, ts + gap) and merges with every window of the
--    key it touches.
--  * A window's contents live in keyed state under the window as namespace:
--    the same state name holds one row per (key, window), which is what
--    h:state() shows while windows fill and clear.
--  * Event time drives everything through two timers per window and key,
--    both in the window's namespace: the trigger's at the window's max
--    timestamp (stop - 1), which emits the contents (Flink's EventTimeTrigger),
--    and the cleanup timer at max timestamp + allowed lateness, which drops
--    the window's state. With no allowed lateness they are the same timer.
--  * A record for a window whose max timestamp the watermark has passed, but
--    whose cleanup time it has not, is added and fires the window again at
--    once with all its contents (a late firing). A record whose windows are
--    all past cleanup is dropped, or sent to the late side output.
--  * Session windows keep, per key, the set of windows in flight and, for
--    each, the "state window": the namespace its contents are in. Merging
--    windows moves their contents into one of their state windows instead of
--    copying everything into a new namespace (Flink's MergingWindowSet).
--
-- Windows here are event-time windows; a record needs a timestamp
-- (assign_timestamps, or the source's timestamp option).

local config = require "eddy.config"
local show = require("eddy.stream").show

local M = {}

local MAX = math.maxinteger

-- ---- windows and assigners ----

-- A window is the table {start =, stop =}: [start, stop) in milliseconds.
local function window(start, stop)
  return { start = start, stop = stop }
end

local function max_timestamp(w)
  return w.stop - 1
end

local function same(a, b)
  return a.start == b.start and a.stop == b.stop
end

local Assigner = {}
Assigner.__index = Assigner

function Assigner:__tostring()
  if self.kind == "session" then
    return ("eddy.windows.session(%d)"):format(self.gap)
  elseif self.kind == "sliding" then
    return ("eddy.windows.sliding(%d, %d, %d)"):format(self.size, self.slide, self.offset)
  end
  return ("eddy.windows.tumbling(%d, %d)"):format(self.size, self.offset)
end

-- Lua's % on integers is a floor modulo, the newer Flink formula: the start
-- is right for negative timestamps too.
local function window_start(ts, offset, size)
  return ts - (ts - offset) % size
end

local function positive(ms, what)
  if ms <= 0 then
    error(("%s must be more than 0ms"):format(what), 3)
  end
  return ms
end

local function signed_duration(v, where)
  if type(v) == "number" and v < 0 then
    return -config.duration(-v, where, 4)
  end
  return config.duration(v, where, 4)
end

function M.tumbling(size, offset)
  size = positive(config.duration(size, "eddy.windows.tumbling: size", 3), "eddy.windows.tumbling: size")
  offset = offset and signed_duration(offset, "eddy.windows.tumbling: offset") or 0
  if math.abs(offset) >= size then
    error("eddy.windows.tumbling: the offset must be smaller than the size", 2)
  end
  return setmetatable({ kind = "tumbling", size = size, offset = offset }, Assigner)
end

function M.sliding(size, slide, offset)
  size = positive(config.duration(size, "eddy.windows.sliding: size", 3), "eddy.windows.sliding: size")
  slide = positive(config.duration(slide, "eddy.windows.sliding: slide", 3), "eddy.windows.sliding: slide")
  offset = offset and signed_duration(offset, "eddy.windows.sliding: offset") or 0
  if math.abs(offset) >= slide then
    error("eddy.windows.sliding: the offset must be smaller than the slide", 2)
  end
  return setmetatable({ kind = "sliding", size = size, slide = slide, offset = offset }, Assigner)
end

function M.session(gap)
  gap = positive(config.duration(gap, "eddy.windows.session: gap", 3), "eddy.windows.session: gap")
  return setmetatable({ kind = "session", gap = gap }, Assigner)
end

function M.is_assigner(x)
  return getmetatable(x) == Assigner
end

-- The windows a timestamp belongs to.
function Assigner:assign(ts)
  if self.kind == "tumbling" then
    local start = window_start(ts, self.offset, self.size)
    return { window(start, start + self.size) }
  elseif self.kind == "sliding" then
    -- every window whose [start, start + size) holds ts, latest start first
    local list = {}
    local start = window_start(ts, self.offset, self.slide)
    while start > ts - self.size do
      list[#list + 1] = window(start, start + self.size)
      start = start - self.slide
    end
    return list
  end
  return { window(ts, ts + self.gap) }
end

-- TimeWindow.mergeWindows: sort by start, then merge greedily every window
-- that intersects the one being built (touching counts: [0,10) and [10,20)
-- become [0,20)). Returns groups {window = cover, members = {...}}.
local function merge_windows(windows)
  table.sort(windows, function(a, b)
    if a.start ~= b.start then
      return a.start < b.start
    end
    return a.stop < b.stop
  end)
  local groups, current = {}, nil
  for _, w in ipairs(windows) do
    if current and current.window.start <= w.stop and current.window.stop >= w.start then
      current.window = window(current.window.start, math.max(current.window.stop, w.stop))
      current.members[#current.members + 1] = w
    else
      current = { window = window(w.start, w.stop), members = { w } }
      groups[#groups + 1] = current
    end
  end
  return groups
end

-- ---- window contents: what a window keeps, per kind of window function ----
--
-- Each kind gives add(v), get() (nil when empty), clear() and merge(from):
-- fold the contents of namespace `from` into the current one. All act on
-- the context's current namespace.

local function reduce_contents(ctx, f)
  local state = ctx:value_state("window-contents")
  local c = {}
  function c.add(v)
    local acc = state:value()
    if acc == nil then
      state:update(v)
    else
      local r = f(acc, v)
      if r == nil then
        error("window reduce: the function returned nil", 0)
      end
      state:update(r)
    end
  end
  function c.get() return state:value() end
  function c.clear() state:clear() end
  function c.merge(from)
    local target = ctx:namespace()
    ctx:set_namespace(from)
    local other = state:value()
    state:clear()
    ctx:set_namespace(target)
    if other ~= nil then
      c.add(other)
    end
  end
  return c
end

local function aggregate_contents(ctx, fns)
  local state = ctx:value_state("window-contents")
  local c = {}
  function c.add(v)
    local acc = state:value()
    if acc == nil then
      acc = fns.create()
    end
    local r = fns.add(acc, v)
    if r == nil then
      -- add may change a table accumulator in place; any other must come back
      if type(acc) ~= "table" then
        error("window aggregate: add returned nil (return the new accumulator)", 0)
      end
      r = acc
    end
    state:update(r)
  end
  function c.get()
    local acc = state:value()
    if acc == nil then
      return nil
    end
    if fns.result then
      return fns.result(acc)
    end
    return acc
  end
  function c.clear() state:clear() end
  function c.merge(from)
    local target = ctx:namespace()
    ctx:set_namespace(from)
    local other = state:value()
    state:clear()
    ctx:set_namespace(target)
    if other ~= nil then
      local mine = state:value()
      state:update(mine == nil and other or fns.merge(mine, other))
    end
  end
  return c
end

local function list_contents(ctx)
  local state = ctx:list_state("window-contents")
  local c = {}
  function c.add(v) state:add(v) end
  function c.get()
    local all = state:get()
    return #all > 0 and all or nil
  end
  function c.clear() state:clear() end
  function c.merge(from)
    local target = ctx:namespace()
    ctx:set_namespace(from)
    local other = state:get()
    state:clear()
    ctx:set_namespace(target)
    state:add_all(other)
  end
  return c
end

-- ---- the window operator ----

-- The process function (open, process, on_timer) of a windowed keyed
-- stream. spec: assigner, allowed_lateness (ms), late (side output tag or
-- nil), and one of reduce (a function), aggregate {create, add, result,
-- merge} or process (a function(ctx, window, elements, out)).
--
-- Each call makes the functions of one operator instance (they keep that
-- instance's state handles), so a job calls it once per subtask.
function M.operator(spec)
  if type(spec) ~= "table" or not M.is_assigner(spec.assigner) then
    error("eddy.windows.operator: expected {assigner = eddy.windows.tumbling(...) | ..., reduce | aggregate | process = ...}", 2)
  end
  local kinds = (spec.reduce and 1 or 0) + (spec.aggregate and 1 or 0) + (spec.process and 1 or 0)
  if kinds ~= 1 then
    error("eddy.windows.operator: give exactly one of reduce, aggregate or process", 2)
  end
  local assigner = spec.assigner
  local lateness = spec.allowed_lateness and config.duration(spec.allowed_lateness, "allowed_lateness", 3) or 0
  local late_tag = spec.late
  local merging = assigner.kind == "session"
  local contents, merge_set
  local emit_result

  -- cleanupTime: max timestamp + allowed lateness, or never on overflow
  local function cleanup_time(w)
    local t = max_timestamp(w) + lateness
    return t >= max_timestamp(w) and t or MAX
  end

  local function window_late(ctx, w)
    return cleanup_time(w) <= ctx.timers:current_watermark()
  end

  -- Timers live in the window's namespace (the actual window, not its
  -- state window); state in its state window's.
  local function register_timer(ctx, w, ts)
    local ns = ctx:namespace()
    ctx:set_namespace(w)
    ctx.timers:register_event_time(ts)
    ctx:set_namespace(ns)
  end

  local function delete_timer(ctx, w, ts)
    local ns = ctx:namespace()
    ctx:set_namespace(w)
    ctx.timers:delete_event_time(ts)
    ctx:set_namespace(ns)
  end

  local function register_cleanup(ctx, w)
    local t = cleanup_time(w)
    if t ~= MAX then
      register_timer(ctx, w, t)
    end
  end

  -- The merging window set of the current key: a list of
  -- {window =, state = state window}, kept in value state (no namespace).
  local function load_windows(ctx)
    ctx:set_namespace(nil)
    return merge_set:value() or {}
  end

  local function save_windows(ctx, set)
    ctx:set_namespace(nil)
    if #set == 0 then
      merge_set:clear()
    else
      merge_set:update(set)
    end
  end

  local function find(set, w)
    for i, entry in ipairs(set) do
      if same(entry.window, w) then
        return i, entry
      end
    end
  end

  -- MergingWindowSet.addWindow: returns the window the new one ended up
  -- in; merges state and trigger timers of windows it swallowed.
  local function add_session_window(ctx, set, new)
    if find(set, new) then
      return new -- the same window is in flight already: nothing merges
    end
    local all = { new }
    for _, entry in ipairs(set) do
      all[#all + 1] = entry.window
    end
    local result = new
    for _, group in ipairs(merge_windows(all)) do
      if #group.members > 1 then
        local cover, members = group.window, {}
        for _, m in ipairs(group.members) do
          if same(m, new) then
            result = cover
          else
            members[#members + 1] = m
          end
        end
        -- the state window of the earliest merged window holds the result
        local _, first = find(set, members[1])
        local target = first.state
        local from = {}
        for _, m in ipairs(members) do
          local i, entry = find(set, m)
          table.remove(set, i)
          if not same(entry.state, target) then
            from[#from + 1] = entry.state
          end
        end
        set[#set + 1] = { window = cover, state = target }
        if not (#members == 1 and same(members[1], cover)) then
          if max_timestamp(cover) + lateness <= ctx.timers:current_watermark() then
            error(("window: merging into %s would end before the current watermark %d")
              :format(show(cover), ctx.timers:current_watermark()), 0)
          end
          -- EventTimeTrigger.onMerge, then clear the merged windows' timers
          if max_timestamp(cover) > ctx.timers:current_watermark() then
            register_timer(ctx, cover, max_timestamp(cover))
          end
          for _, m in ipairs(members) do
            delete_timer(ctx, m, max_timestamp(m))
            if cleanup_time(m) ~= MAX then
              delete_timer(ctx, m, cleanup_time(m))
            end
          end
          ctx:set_namespace(target)
          for _, ns in ipairs(from) do
            contents.merge(ns)
          end
        end
      end
    end
    if same(result, new) and not find(set, new) then
      set[#set + 1] = { window = new, state = new }
    end
    return result
  end

  -- Adds the record to one window (whose contents are in state_window) and
  -- runs the trigger: fire at once if the watermark is already past the
  -- window's end (a late firing), else wait for the end.
  local function add_to_window(ctx, w, state_window, value, out)
    ctx:set_namespace(state_window)
    contents.add(value)
    if max_timestamp(w) <= ctx.timers:current_watermark() then
      local c = contents.get()
      if c ~= nil then
        emit_result(ctx, w, c, out)
      end
    else
      register_timer(ctx, w, max_timestamp(w))
    end
    register_cleanup(ctx, w)
  end

  -- The handles belong to one subtask (one ctx): the same functions serve
  -- every subtask of a job, so each entry point binds its subtask's first.
  local per_subtask = setmetatable({}, { __mode = "k" })
  local function bind(ctx)
    local mine = per_subtask[ctx]
    contents, merge_set, emit_result = mine.contents, mine.merge_set, mine.emit_result
  end

  local fns = {}

  function fns.open(ctx)
    if spec.reduce then
      contents = reduce_contents(ctx, spec.reduce)
    elseif spec.aggregate then
      contents = aggregate_contents(ctx, spec.aggregate)
    else
      contents = list_contents(ctx)
    end
    if merging then
      merge_set = ctx:value_state("merging-window-set")
    end
    local process = spec.process
    emit_result = function(wctx, w, result, out)
      if process then
        -- the function's output carries the window's max timestamp too
        local stamped = setmetatable({}, {
          __call = function(_, v) out:collect(v, max_timestamp(w)) end,
          __index = {
            collect = function(_, v) out:collect(v, max_timestamp(w)) end,
            side = function(_, tag, v) out:side(tag, v) end,
          },
        })
        process(wctx, window(w.start, w.stop), result, stamped)
      else
        out:collect(result, max_timestamp(w))
      end
    end
    per_subtask[ctx] = { contents = contents, merge_set = merge_set, emit_result = emit_result }
  end

  function fns.process(ctx, value, out)
    bind(ctx)
    local ts = ctx:timestamp()
    if ts == nil then
      error("window: the record has no timestamp (assign timestamps before windows, "
        .. "with assign_timestamps or the source's timestamp option)", 0)
    end
    local handled = false
    if merging then
      local set = load_windows(ctx)
      for _, w in ipairs(assigner:assign(ts)) do
        local actual = add_session_window(ctx, set, w)
        if window_late(ctx, actual) then
          table.remove(set, (find(set, actual)))
        else
          handled = true
          local _, entry = find(set, actual)
          add_to_window(ctx, actual, entry.state, value, out)
        end
      end
      save_windows(ctx, set)
    else
      for _, w in ipairs(assigner:assign(ts)) do
        if not window_late(ctx, w) then
          handled = true
          add_to_window(ctx, w, w, value, out)
        end
      end
    end
    ctx:set_namespace(nil)
    -- every window was past cleanup: the record is late
    if not handled and ts + lateness <= ctx.timers:current_watermark() and late_tag ~= nil then
      out:side(late_tag, value)
    end
  end

  function fns.on_timer(ctx, ts, out)
    bind(ctx)
    local w = ctx:namespace()
    local set, state_window = nil, w
    if merging then
      set = load_windows(ctx)
      local _, entry = find(set, w)
      if entry == nil then
        return -- the window merged away or was retired: nothing to do
      end
      state_window = entry.state
    end
    ctx:set_namespace(state_window)
    if ts == max_timestamp(w) then
      local c = contents.get()
      if c ~= nil then
        emit_result(ctx, w, c, out)
      end
    end
    if ts == cleanup_time(w) then
      contents.clear()
      delete_timer(ctx, w, max_timestamp(w))
      if set then
        table.remove(set, (find(set, w)))
        save_windows(ctx, set)
      end
    end
  end

  return fns
end

-- ---- the builder behind keyed:window(assigner) ----

local Windowed = {}
Windowed.__index = Windowed

function M.windowed(keyed, assigner, apply)
  if not M.is_assigner(assigner) then
    error("window: expected eddy.windows.tumbling(...), .sliding(...) or .session(...)", 4)
  end
  return setmetatable({ _keyed = keyed, _assigner = assigner, _lateness = 0, _apply = apply }, Windowed)
end

function Windowed:allowed_lateness(d)
  self._lateness = config.duration(d, "allowed_lateness", 3)
  return self
end

function Windowed:side_output_late(tag)
  if tag == nil then
    error("side_output_late: a tag is required", 2)
  end
  self._late = tag
  return self
end

-- The operator factory handed to the stream: one instance per subtask.
local function factory(self, what, fn)
  local spec = { assigner = self._assigner, allowed_lateness = self._lateness, late = self._late }
  spec[what] = fn
  return function() return M.operator(spec) end
end

local function check_uid(uid, what)
  if type(uid) ~= "string" or uid == "" then
    error(("%s: the first argument must be the operator's uid (a non-empty string)"):format(what), 3)
  end
end

function Windowed:reduce(uid, f)
  check_uid(uid, "window reduce")
  if type(f) ~= "function" then
    error("window reduce: expected a function", 2)
  end
  return self._apply(uid, "reduce", factory(self, "reduce", f))
end

function Windowed:aggregate(uid, fns)
  check_uid(uid, "window aggregate")
  if type(fns) ~= "table" or type(fns.create) ~= "function" or type(fns.add) ~= "function" then
    error("window aggregate: expected {create =, add =, result =, merge =} functions", 2)
  end
  if self._assigner.kind == "session" and type(fns.merge) ~= "function" then
    error("window aggregate: session windows need a merge function", 2)
  end
  return self._apply(uid, "aggregate", factory(self, "aggregate", fns))
end

-- fns.process(ctx, window, elements, out): every element of the window.
function Windowed:process(uid, fns)
  check_uid(uid, "window process")
  local f = type(fns) == "table" and fns.process or fns
  if type(f) ~= "function" then
    error("window process: expected {process = function(ctx, window, elements, out)}", 2)
  end
  return self._apply(uid, "process", factory(self, "process", f))
end

return M
