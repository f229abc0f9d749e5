-- From a job's nodes to the runtime's vertices, and running them.
--
-- Physical nodes (sources and operators) are grouped into vertices: an
-- operator joins its input's vertex (is "chained", records stay Lua values
-- and are handed over by a function call) when it has a single input, no
-- partitioning in between and the same parallelism, as in Flink. Otherwise
-- it starts a vertex of its own, and records reach it over the runtime's
-- channels, partitioned by key group (key_by), round robin (rebalance or a
-- change of parallelism) or one to one (forward).
--
-- Each subtask of a vertex builds its own instances of the vertex's nodes,
-- from the last to the first, so that every node's `env.emit` is ready when
-- it is built:
--   env.emit(v)       the node's main output (chained pushes and emitters)
--   env.side(tag)     the function for side output `tag`, or nil
--   env.emit_at(v, ts)  the same, with an explicit timestamp
--   env.emit_watermark(wm), env.emit_status(idle)
--                     pass event time on to every consumer
--   env.task          the runtime subtask (index, parallelism, timestamp)
--   env.ctx           the process context (keyed state and timers for keyed
--                     vertices)
--   env.clock         now() and wake_at(ts): processing time
--   env.config        the job's configuration
--   env.report        a table the node may fill with counters for the result
-- An instance has push(v) (or poll(budget) for sources) and optionally
-- watermark(wm), status(idle), alarm(now), finish() and close().

local core = require "eddy.core"
local context = require "eddy.context"

local M = {}

-- The physical inputs behind a node's inputs, through virtual nodes: a list
-- of { node =, part =, key =, tag =, side = }, side being the index in
-- node.inputs it comes from (a connected operator's second input is its
-- broadcast side). The partitioning closest to the consumer wins, as when a
-- stream is partitioned twice.
local function physical_inputs(node)
  local found = {}
  local function resolve(n, via, tag, side)
    if n.kind == "partition" then
      return resolve(n.inputs[1], via or n, tag, side)
    elseif n.kind == "union" then
      for _, i in ipairs(n.inputs) do
        resolve(i, via, tag, side)
      end
    elseif n.kind == "side" then
      return resolve(n.inputs[1], via, n.tag, side)
    else
      found[#found + 1] = { node = n, via = via, part = via and via.part, tag = tag, side = side }
    end
  end
  for side, i in ipairs(node.inputs) do
    resolve(i, nil, nil, side)
  end
  return found
end

-- Calls every function of a list; copies the record for all consumers but
-- the last, so that one consumer changing a table cannot change what the
-- next one sees.
local function fanout(list)
  local n = #list
  if n == 0 then
    return function() end
  elseif n == 1 then
    return list[1]
  end
  local encode, decode = core.encode, core.decode
  return function(v)
    for i = 1, n - 1 do
      list[i](type(v) == "table" and decode(encode(v)) or v)
    end
    list[n](v)
  end
end

local function display_name(node)
  local name = node.label or node.name
  if node.uid and node.label then
    name = name .. " [" .. node.uid .. "]"
  end
  return name
end

-- Groups the job's physical nodes into vertices. Returns the vertex list;
-- each vertex has nodes (in graph order), parallelism, max_parallelism,
-- source, keyed, inputs (edges), and each node gets `consumers`
-- ({ chain = node } or { edge = e, key = selector }) per output: main
-- output under consumers.main, side outputs under consumers.side[tag].
function M.compile(job)
  local cfg = job.config
  local vertices, vertex_of = {}, {}
  local function default_parallelism(n)
    if n.kind == "source" then
      return n.default_parallelism or 1
    end
    return cfg.parallelism
  end
  local function consumers_of(n, tag)
    n.consumers = n.consumers or { main = {}, side = {} }
    if tag == nil then
      return n.consumers.main
    end
    local list = n.consumers.side[tag]
    if not list then
      list = {}
      n.consumers.side[tag] = list
    end
    return list
  end

  local uids = {}
  for _, n in ipairs(job.nodes) do
    n.consumers = nil -- compiling again (graph(), then run()) starts afresh
    if n.uid then
      -- state is matched by uid on restore: two operators cannot share one
      if uids[n.uid] then
        error(("eddy.job: uid %q is used by two operators (%s and %s)")
          :format(n.uid, display_name(uids[n.uid]), display_name(n)), 0)
      end
      uids[n.uid] = n
    end
  end
  for _, n in ipairs(job.nodes) do
    if n.kind == "source" or n.kind == "op" then
      n.consumers = n.consumers or { main = {}, side = {} }
      local ins = n.kind == "op" and physical_inputs(n) or {}
      local p = n.parallelism
        or (n.follow_input_parallelism and ins[1] and ins[1].node.effective_parallelism)
        or default_parallelism(n)
      n.effective_parallelism = p
      local only = ins[1]
      if #ins == 1 and only.part == nil and only.node.effective_parallelism == p and not n.keyed then
        local v = vertex_of[only.node]
        v.nodes[#v.nodes + 1] = n
        vertex_of[n] = v
        local list = consumers_of(only.node, only.tag)
        list[#list + 1] = { chain = n }
      else
        local v = {
          id = #vertices, nodes = { n }, parallelism = p, source = n.kind == "source",
          keyed = n.keyed or false, inputs = {},
          max_parallelism = cfg.max_parallelism or core.default_max_parallelism(p),
        }
        if v.parallelism > v.max_parallelism then
          error(("eddy.job: %s has parallelism %d, above the max parallelism %d")
            :format(display_name(n), p, v.max_parallelism), 0)
        end
        vertices[#vertices + 1] = v
        vertex_of[n] = v
        for _, input in ipairs(ins) do
          local from = vertex_of[input.node]
          local part = input.part or (from.parallelism == p and "forward" or "rebalance")
          local broadcast_side = n.connected and input.side == 2
          if n.keyed and part ~= "keyed" and not broadcast_side then
            error(("eddy.job: %s needs a keyed stream"):format(display_name(n)), 0)
          end
          local via = input.via or {}
          local e = { from = from, to = v, part = part, key = via.key, key_field = via.key_field,
                      key_desc = via.key_desc, broadcast_side = broadcast_side }
          v.inputs[#v.inputs + 1] = e
          local list = consumers_of(input.node, input.tag)
          list[#list + 1] = { edge = e }
        end
      end
    end
  end
  for _, v in ipairs(vertices) do
    local names = {}
    for i, n in ipairs(v.nodes) do
      names[i] = display_name(n)
    end
    v.name = table.concat(names, " -> ")
  end
  return vertices
end

-- The handler of one subtask of vertex v (see src/lua/job.c).
--
-- Besides records, a chain carries watermarks and idle/active statuses, in
-- the same order: a node's watermark entry handles the watermark (a keyed
-- process fires its event-time timers) and passes it on to the node's
-- consumers, chained ones by call, the others over their edges. A node
-- without a watermark function just passes it on.
-- The name a node's operator state is kept under in checkpoints: its uid,
-- or one derived from its place in the graph (the same on every run of the
-- same job script).
local function state_uid(n)
  return n.uid or ("%s-%d"):format(n.kind, n.id)
end
M.state_uid = state_uid

-- FNV-1a, 32 bits: a short tag that keeps shortened names apart.
local function fnv1a(s)
  local h = 2166136261
  for i = 1, #s do
    h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff
  end
  return ("%08x"):format(h)
end

-- A vertex's files in a checkpoint are named after its first operator's
-- uid (the keyed one, in a keyed vertex), so state finds its operator
-- again however the rest of the graph changed, as Flink matches state by
-- operator uid. A uid that is not a plain file name, or a long one, is
-- shortened and tagged with its hash.
local function vertex_uid(v)
  local uid = state_uid(v.nodes[1])
  if #uid <= 64 and uid:match("^[%w_][%w_.-]*$") then
    return uid
  end
  return uid:sub(1, 40):gsub("[^%w_-]", "_") .. "-" .. fnv1a(uid)
end

local function open_subtask(job, v, task, keyed, restored)
  local function timestamp() return task:timestamp() end
  local function set_timestamp(ts) task:set_timestamp(ts) end
  local function now() return task:now() end
  local function wake_at(ts) task:wake_at(ts) end
  local instances = {}
  local push_of, watermark_of, status_of = {}, {}, {}
  local function build(i)
    local n = v.nodes[i]
    local received = { watermark = math.mininteger }

    local function targets(list, what)
      local fns = {}
      for _, c in ipairs(list) do
        local e = c.edge
        if c.chain then
          fns[#fns + 1] = (what == "push" and push_of or what == "watermark" and watermark_of
                           or status_of)[c.chain]
        elseif what == "watermark" then
          fns[#fns + 1] = function(wm) task:emit_watermark(e.output, wm) end
        elseif what == "status" then
          fns[#fns + 1] = function(idle) task:emit_status(e.output, idle) end
        elseif e.key_field ~= nil then
          -- the emitter reads the key's field itself: one call per record
          fns[#fns + 1] = task:emitter(e.output, e.key_field, e.key)
        elseif e.key then
          local emit, key = task:emitter(e.output), e.key
          fns[#fns + 1] = function(value) emit(value, key(value)) end
        else
          fns[#fns + 1] = task:emitter(e.output)
        end
      end
      return what == "push" and fanout(fns) or function(x)
        for k = 1, #fns do
          fns[k](x)
        end
      end
    end
    local side, every = {}, {}
    for _, c in ipairs(n.consumers.main) do
      every[#every + 1] = c
    end
    for tag, list in pairs(n.consumers.side) do
      side[tag] = targets(list, "push")
      for _, c in ipairs(list) do
        every[#every + 1] = c
      end
    end
    local emit = targets(n.consumers.main, "push")
    local env = {
      emit = emit,
      side = function(tag) return side[tag] end,
      emit_at = function(value, ts)
        local before = task:timestamp()
        task:set_timestamp(ts)
        emit(value)
        task:set_timestamp(before)
      end,
      emit_watermark = targets(every, "watermark"),
      emit_status = targets(every, "status"),
      set_timestamp = set_timestamp,
      task = task,
      -- only the vertex's first operator is keyed: the ones chained after
      -- it see records, not keys
      ctx = context.new {
        keyed = i == 1 and keyed or nil,
        subtask = task:index(),
        parallelism = task:parallelism(),
        timestamp = timestamp,
        clock = { now = now, wake_at = wake_at, watermark = function() return received.watermark end },
        restored = job._restoring,
      },
      clock = { now = now, wake_at = wake_at },
      config = job.config,
      report = job.reports[n],
    }
    if i == 1 then
      -- the inputs (1-based, as push receives them) of a connected
      -- operator's broadcast side
      env.broadcast_input = {}
      for k, e in ipairs(v.inputs) do
        env.broadcast_input[k] = e.broadcast_side or nil
      end
    end
    -- this node's state from the checkpoint restored from: its own subtask's
    -- (restored), and every old subtask's, for operators that redistribute
    -- state when the parallelism changed (restored_all: { parallelism =,
    -- [old index + 1] = state or false })
    if restored then
      local uid, all = state_uid(n), { parallelism = restored.parallelism }
      for j = 1, restored.parallelism do
        all[j] = restored[j] and restored[j][uid] or false
      end
      env.restored = all[task:index() + 1] or nil
      env.restored_all = all
    end
    local inst = n.build(env)
    instances[i] = inst
    push_of[n] = inst.push
    local handle_watermark = inst.watermark or env.emit_watermark
    watermark_of[n] = function(wm)
      received.watermark = wm
      handle_watermark(wm)
    end
    status_of[n] = inst.status or env.emit_status
  end
  -- Build from the last node to the first; if one fails to open, close
  -- those already open before passing the error on.
  for i = #v.nodes, 1, -1 do
    local ok, err = pcall(build, i)
    if not ok then
      for k = i + 1, #v.nodes do
        if instances[k].close then
          pcall(instances[k].close)
        end
      end
      error(err, 0)
    end
  end
  local head = instances[1]
  local handler = {
    watermark = watermark_of[v.nodes[1]],
    status = status_of[v.nodes[1]],
  }
  if v.source then
    handler.poll = head.poll
  else
    handler.push = head.push
    handler.call = head.call
  end
  function handler.alarm(t)
    for _, inst in ipairs(instances) do
      if inst.alarm then
        inst.alarm(t)
      end
    end
  end
  -- end of input: finish every node in graph order, so a node's last
  -- records still reach the nodes after it
  function handler.finish()
    for _, inst in ipairs(instances) do
      if inst.finish then
        inst.finish()
      end
    end
  end
  -- checkpoint `id`: every node's operator state, by uid
  function handler.snapshot(id)
    local states
    for k, inst in ipairs(instances) do
      if inst.snapshot then
        states = states or {}
        states[state_uid(v.nodes[k])] = inst.snapshot(id)
      end
    end
    return states
  end
  function handler.notify(id, completed)
    for _, inst in ipairs(instances) do
      if inst.notify then
        inst.notify(id, completed)
      end
    end
  end
  function handler.close()
    local first_err
    for _, inst in ipairs(instances) do
      if inst.close then
        local ok, err = pcall(inst.close)
        if not ok and first_err == nil then
          first_err = err
        end
      end
    end
    if first_err ~= nil then
      error(first_err, 0)
    end
  end
  return handler
end

-- Checks that a checkpoint (core.checkpoint_info) fits the compiled graph:
-- every operator it holds state for is still there, at the same
-- parallelism and max parallelism. State of an operator that is gone is
-- an error unless allow_non_restored_state says to drop it, as in Flink.
function M.check_restore(job, vertices, info)
  local by_uid = {}
  for _, v in ipairs(vertices) do
    by_uid[vertex_uid(v)] = v
  end
  local where = "eddy.job: restore from " .. info.path
  local missing, seen = {}, {}
  for _, st in ipairs(info.subtasks) do
    local v = by_uid[st.uid]
    if v == nil then
      if not seen[st.uid] then
        seen[st.uid] = true
        missing[#missing + 1] = ("%s (%s)"):format(st.uid, st.vertex or "?")
      end
    else
      if v.keyed and st.max_parallelism ~= v.max_parallelism then
        -- as in Flink, a max parallelism the job does not set comes from
        -- the state; one it sets must match
        if job.config.max_parallelism ~= nil then
          error(("%s: %s had max parallelism %d and now has %d; the max parallelism of keyed "
            .. "state cannot change"):format(where, v.name, st.max_parallelism, v.max_parallelism), 0)
        end
        v.max_parallelism = st.max_parallelism
      end
      if v.keyed and v.parallelism > v.max_parallelism then
        error(("%s: %s cannot run at parallelism %d: its state has %d key groups (the max "
          .. "parallelism)"):format(where, v.name, v.parallelism, v.max_parallelism), 0)
      end
      if st.parallelism ~= v.parallelism then
        if v.source then
          error(("%s: %s ran at parallelism %d and cannot be restored at %d: each subtask's "
            .. "read position is its own"):format(where, v.name, st.parallelism, v.parallelism), 0)
        end
        for _, part in ipairs(st.parts or {}) do
          if part == "channels" then
            error(("%s: %s holds records that were in flight (an unaligned checkpoint), which "
              .. "only the same parallelism can take back; restore it at parallelism %d"):format(
              where, v.name, st.parallelism), 0)
          end
        end
      end
    end
  end
  if #missing > 0 and not job.config.allow_non_restored_state then
    error(("%s: the checkpoint holds state of operator%s %s, which this job does not have; "
      .. "allow_non_restored_state = true (--allow-non-restored-state) drops it")
      :format(where, #missing > 1 and "s" or "", table.concat(missing, ", ")), 0)
  end
end

-- The runtime job for one run (a restart builds a new one).
function M.build(job, vertices)
  local names = {}
  for _, v in ipairs(vertices) do
    local name = vertex_uid(v)
    if names[name] then
      error(("eddy.job: %s and %s would keep their state under the same name %q: give one "
        .. "another uid"):format(names[name].name, v.name, name), 0)
    end
    names[name] = v
  end
  local cj = core.job_new()
  if job.config.processing_time == "manual" then
    cj:use_manual_clock(0)
  end
  local backend = job.config.state_backend
  for _, v in ipairs(vertices) do
    local id = cj:add_vertex {
      name = v.name, parallelism = v.parallelism, max_parallelism = v.max_parallelism,
      source = v.source, keyed = v.keyed,
      uid = vertex_uid(v),
      -- keyed subtasks on RocksDB work in <dir>/job_<id>_op_<uid>_<subtask>,
      -- as Flink names them (without its random suffix: the lock of a
      -- folder then tells a job resumed twice)
      state_backend = v.keyed and backend.type ~= "heap" and backend or nil,
      state_label = v.keyed and job.job_id and ("job_%s_op_%s"):format(job.job_id, vertex_uid(v))
        or nil,
      open = function(task, keyed, restored) return open_subtask(job, v, task, keyed, restored) end,
    }
    assert(id == v.id)
  end
  for _, v in ipairs(vertices) do
    for _, e in ipairs(v.inputs) do
      e.output = cj:connect(e.from.id, v.id, e.part)
    end
  end
  return cj
end

-- A readable description of the compiled graph.
function M.describe(job, vertices)
  local cfg = job.config
  local lines = { ("job %q (parallelism %d%s)"):format(cfg.name, cfg.parallelism,
    cfg.max_parallelism and (", max parallelism " .. cfg.max_parallelism) or "") }
  for _, v in ipairs(vertices) do
    lines[#lines + 1] = ("  [%d] %s  (parallelism %d%s)"):format(v.id + 1, v.name, v.parallelism,
      v.keyed and (", keyed state, max parallelism " .. v.max_parallelism) or "")
    for _, e in ipairs(v.inputs) do
      lines[#lines + 1] = ("      <- [%d] %s%s%s"):format(e.from.id + 1, e.part,
        e.key_desc and (" by " .. e.key_desc) or "",
        e.broadcast_side and " (to process_broadcast)" or "")
    end
  end
  return table.concat(lines, "\n")
end

return M
