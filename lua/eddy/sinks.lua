-- The sinks of API.md, added to Stream as methods. A sink is an operator
-- without outputs; its default parallelism is the job's, as in Flink.

local core = require "eddy.core"
local config = require "eddy.config"
local inspect = require "eddy.inspect"
local stream = require "eddy.stream"

local Stream = stream.Stream

-- What a sink returns, as Flink's DataStreamSink: the end of a stream, to
-- name, give a uid or a parallelism, but not to add operators to.
local Sink = {}
Sink.__index = Sink
Sink.uid = Stream.uid
Sink.name = Stream.name
Sink.parallelism = Stream.parallelism

function Sink:__tostring()
  return "eddy.Sink " .. self._node.name
end

local function sink_node(self, name, build, stateful)
  local s = self:_op(name, build, { sink = true, stateful = stateful })
  return setmetatable(s, Sink)
end

local function text_of(v)
  if type(v) == "string" then
    return v
  end
  return inspect(v, { oneline = true })
end

local print_opts = { prefix = config.string() }

-- Flink's print(): with parallelism above 1 each line starts with the
-- subtask's number ("3> "), after the prefix if there is one ("id:3> ").
function Stream:print(opts)
  opts = config.check_options(opts or {}, print_opts, "print", 3)
  local prefix = opts.prefix or ""
  return sink_node(self, "print", function(env)
    local task = env.task
    local head = prefix
    if task:parallelism() > 1 then
      head = head .. (head == "" and "" or ":") .. (task:index() + 1)
    end
    if head ~= "" then
      head = head .. "> "
    end
    local out = io.stdout
    local function check(ok, err)
      if not ok then
        error("print: cannot write to standard output: " .. tostring(err), 0)
      end
    end
    return {
      push = function(v) check(out:write(head, text_of(v), "\n")) end,
      finish = function() check(out:flush()) end,
    }
  end)
end

function Stream:sink(fn)
  if type(fn) ~= "function" then
    error("sink: expected a function", 2)
  end
  return sink_node(self, "sink", function()
    return { push = fn }
  end)
end

local Collected = {}
Collected.__index = Collected

-- The records that reached the sink, in arrival order, after job:run().
function Collected:values()
  return self._values
end

-- Exactly once through restarts: each subtask's checkpoints count what it
-- collected, and a restarted subtask takes back what it collected after
-- the checkpoint it starts from (all of it, without one), as it will
-- collect that again.
function Stream:collect()
  local collected = setmetatable({ _values = {}, _owners = {} }, Collected)
  sink_node(self, "collect", function(env)
    local values, owners = collected._values, collected._owners
    local me = env.task:index()
    -- how many values of each old subtask this one keeps: its own, and,
    -- at a lower parallelism, subtask 0 also those of subtasks now gone
    local keep = { [me] = 0 }
    local all = env.restored_all
    if all then
      for j = 0, all.parallelism - 1 do
        if j == me or (me == 0 and j >= env.task:parallelism()) then
          keep[j] = all[j + 1] and all[j + 1].count or 0
        end
      end
    end
    local n, seen, count = 0, {}, 0
    for i = 1, #values do
      local owner = owners[i]
      local limit = keep[owner]
      if limit then
        seen[owner] = (seen[owner] or 0) + 1
      end
      if not limit or seen[owner] <= limit then
        n = n + 1
        -- what this subtask keeps is its own from now on
        values[n], owners[n] = values[i], limit and me or owner
        count = count + (limit and 1 or 0)
      end
    end
    for i = #values, n + 1, -1 do
      values[i], owners[i] = nil, nil
    end
    return {
      push = function(v)
        count = count + 1
        values[#values + 1] = v
        owners[#owners + 1] = me
      end,
      snapshot = function() return { count = count } end,
    }
  end)
  return collected
end

local file_opts = {
  format = config.enum { "jsonl", "csv", "lines" },
  header = config.boolean(),
  delimiter = config.string(),
  transactional = config.boolean(),
}

-- Part files dir/part-<subtask>-<seq>. Transactional (the default when the
-- job takes checkpoints): records go to hidden in-progress files; each
-- checkpoint closes the current one, and once that checkpoint completes
-- it is renamed to its final name. After a failure the files no completed
-- checkpoint knows of are deleted, so replayed records are not written
-- twice: with a replayable source the output is exactly once. The end of
-- the input commits what is left.
function Stream:to_file(dir, opts)
  if type(dir) ~= "string" or dir == "" then
    error("to_file: expected a directory path", 2)
  end
  opts = config.check_options(opts or {}, file_opts, "to_file", 3)
  local job = self._job
  local format = opts.format or "jsonl"
  return sink_node(self, "to_file(" .. dir .. ")", function(env)
    local transactional = opts.transactional
    if transactional == nil then
      transactional = job.config.checkpoint.interval ~= nil
    end
    local subtask = env.task:index()
    if transactional then
      -- files the restored checkpoint saw closed are committed, others go;
      -- at a lower parallelism subtask 0 does so for the subtasks now gone
      local all = env.restored_all
      core.writer_recover(dir, subtask, env.restored and env.restored.pending or {})
      for j = env.task:parallelism(), (all and all.parallelism or 0) - 1 do
        if subtask == 0 then
          core.writer_recover(dir, j, all[j + 1] and all[j + 1].pending or {})
        end
      end
    end
    local writer = core.writer_open {
      dir = dir, subtask = subtask, format = format, transactional = transactional,
      header = opts.header ~= false, delimiter = opts.delimiter,
    }
    local pending = {} -- closed files not committed yet: {checkpoint id, path}
    local function commit_upto(id)
      local keep = {}
      for _, p in ipairs(pending) do
        if p[1] <= id then
          core.writer_commit(p[2])
        else
          keep[#keep + 1] = p
        end
      end
      pending = keep
    end
    local inst = {
      push = function(v) writer:write(v) end,
      close = function() writer:close() end,
    }
    if transactional then
      -- The last file, prepared when the input ends, belongs to the first
      -- checkpoint taken after that (the finished subtask's last state),
      -- or to the end of the whole job.
      local LAST = math.maxinteger
      local finished = false
      function inst.snapshot(id)
        local path = not finished and writer:prepare()
        if path then
          pending[#pending + 1] = { id, path }
        end
        local paths = {}
        for i, p in ipairs(pending) do
          if p[1] == LAST then
            p[1] = id
          end
          paths[i] = p[2]
        end
        return { pending = paths }
      end
      function inst.notify(id, completed)
        if completed then
          commit_upto(id)
        end
      end
      function inst.finish()
        local path = writer:prepare()
        if path then
          pending[#pending + 1] = { LAST, path }
        end
        writer:close()
        finished = true
      end
    else
      inst.finish = function() writer:close() end
    end
    return inst
  end, true)
end

return Stream
