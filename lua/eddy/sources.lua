-- The sources of API.md, added to Job as methods. Each makes a "source"
-- node whose build(env) gives a subtask's instance with
--   poll(budget) -> finished   emit up to budget records through env.emit
-- Every source is a `next()` that returns its subtask's next record (nil
-- at the end), wrapped by one poller that also knows about time:
--   arrival_time   with the job's manual clock, a field or function giving
--                  the processing time at which each record arrives: the
--                  poller holds a record back until the clock gets there,
--                  which replays recorded arrival times exactly
--   rate           (generator) records per second: the poller holds each
--                  record until its turn on the processing-time clock
--   timestamp, watermarks, idleness
--                  event time assigned right at the source, in the same
--                  subtask (as Flink's fromSource(source, strategy)), via an
--                  assign_timestamps operator chained to it
-- Sources with several subtasks split their input deterministically:
-- subtask i of p takes records i+1, i+1+p, ... (collection, generator).

local core = require "eddy.core"
local config = require "eddy.config"
local stream = require "eddy.stream"

local M = {}

-- Options every source takes.
local common_opts = {
  name = config.string(),
  parallelism = config.integer { min = 1, max = 32768 },
  arrival_time = config.one_of_types { "string", "number", "function" },
  timestamp = config.one_of_types { "string", "number", "function" },
  watermarks = config.one_of_types { "table" },
  idleness = config.duration(),
  on_error = config.enum { "fail", "skip" },
}

local function with_common(own)
  local schema = {}
  for k, v in pairs(common_opts) do
    schema[k] = v
  end
  for k, v in pairs(own) do
    schema[k] = v
  end
  return schema
end

local function basename(path)
  return (path:match("([^/]+)/*$")) or path
end

local function field_or_function(spec)
  if type(spec) == "function" then
    return spec
  end
  return function(v) return type(v) == "table" and v[spec] or nil end
end

-- The arrival time of a record, checked.
local function arrival_of(spec)
  local get = field_or_function(spec)
  return function(v)
    local t, err = config.milliseconds(get(v),
      "arrival_time: " .. (type(spec) == "function" and "the function's result for "
                           or ("field " .. stream.show(spec) .. " of ")) .. stream.show(v))
    if t == nil then
      error(err, 0)
    end
    return t
  end
end

-- Builds the instance: next() gives records, due(v, k) (optional) the
-- processing time at which the k-th record of this subtask may go out.
-- position() is where the source stands after the record next() returned
-- last: a checkpoint stores the position after the last record emitted,
-- not after one held back waiting for its time.
local function poller(env, next_record, due, position)
  local task, emit = env.task, env.emit
  local pending, count = nil, 0
  local held_at -- with a record held back: the position before it was read
  local inst = {}
  function inst.poll(budget)
    for _ = 1, budget do
      local v = pending
      if v == nil then
        local before = due and position and position()
        v = next_record()
        if v == nil then
          return true
        elseif v == false then
          -- nothing yet (a quiet pipe): look again soon, timers go on
          task:wait_until(task:now() + 10)
          return false
        end
        held_at = before
      end
      if due then
        local time = due(v, count)
        if time > task:now() then
          pending = v
          task:wait_until(time)
          return false
        end
      end
      pending = nil
      count = count + 1
      emit(v)
    end
    return false
  end
  function inst.snapshot()
    if pending ~= nil then
      return { position = held_at }
    end
    return { position = position() }
  end
  return inst
end

-- Adds a source node; `make_next(env)` returns the subtask's next(), and
-- optionally close(), finish(), position() and seek(position) (a source
-- that can tell and go back to its position is replayable).
local function add_source(job, where, opts, name, make_next, extra)
  if opts.arrival_time ~= nil and job.config.processing_time ~= "manual" then
    error(where .. ": arrival_time needs the job's manual clock (processing_time = \"manual\")", 3)
  end
  local event_time
  if opts.timestamp ~= nil or opts.watermarks ~= nil or opts.idleness ~= nil then
    event_time = require("eddy.time").check_assign_options({
      timestamp = opts.timestamp, watermarks = opts.watermarks, idleness = opts.idleness,
      on_error = opts.on_error,
    }, 3, where)
  end
  local arrival = opts.arrival_time ~= nil and arrival_of(opts.arrival_time) or nil
  local node = { kind = "source", name = name, inputs = {}, default_parallelism = 1 }
  for k, v in pairs(extra or {}) do
    node[k] = v
  end
  node.build = function(env)
    local next_record, close, finish, position, seek = make_next(env)
    if env.restored and env.restored.position ~= nil and seek then
      seek(env.restored.position)
    end
    local due = arrival or node.due and node.due(env) or nil
    local inst = poller(env, next_record, due, position)
    inst.close, inst.finish = close, finish
    if not position then
      inst.snapshot = nil
    end
    return inst
  end
  job:_add(node)
  local s = stream.wrap(job, node)
  if opts.parallelism then
    s:parallelism(opts.parallelism)
  end
  if event_time then
    s = s:_assign(event_time)
    s._node.follow_input_parallelism = true
  end
  return s
end

local function check(opts, own, where)
  return config.check_options(opts or {}, with_common(own), where, 4)
end

function M.from_collection(job, array, opts)
  if type(array) ~= "table" then
    error("from_collection: expected an array of records, got " .. type(array), 2)
  end
  opts = check(opts, {}, "from_collection")
  -- Records are stored encoded: they are checked now, where the script
  -- can see the mistake, and each run hands out fresh copies.
  local bytes = {}
  local n = #array
  for i = 1, n do
    local v = array[i]
    if v == nil then
      error(("from_collection: record %d is nil"):format(i), 2)
    end
    local ok, b = pcall(core.encode, v)
    if not ok then
      error(("from_collection: record %d: %s"):format(i, (b:gsub("^eddy%.encode: ", ""))), 2)
    end
    bytes[i] = b
  end
  return add_source(job, "from_collection", opts, opts.name or "from_collection", function(env)
    local decode = core.decode
    local step = env.task:parallelism()
    local i = env.task:index() + 1
    return function()
      if i > n then
        return nil
      end
      local v = decode(bytes[i])
      i = i + step
      return v
    end, nil, nil, function() return i end, function(pos) i = pos end
  end)
end

-- Records 1..count (or forever without count), each fn(i) or i itself,
-- at most `rate` per second over all subtasks.
function M.from_generator(job, opts)
  opts = check(opts, {
    count = config.integer { min = 0 },
    rate = config.number { above = 0 },
    fn = config.fn(),
  }, "from_generator")
  local count, rate, fn = opts.count, opts.rate, opts.fn
  local extra = {}
  if rate then
    -- the k-th record of a subtask is due k / (rate / p) seconds after its
    -- first poll
    extra.due = function(env)
      local per_task = rate / env.task:parallelism()
      local started
      return function(_, k)
        started = started or env.task:now()
        return started + math.floor(k * 1000 / per_task)
      end
    end
  end
  return add_source(job, "from_generator", opts, opts.name or "from_generator", function(env)
    local step = env.task:parallelism()
    local i = env.task:index() + 1
    return function()
      if count and i > count then
        return nil
      end
      local v = i
      if fn then
        v = fn(i)
        if v == nil then
          error(("from_generator: fn returned nil for %d"):format(i), 0)
        end
      end
      i = i + step
      return v
    end, nil, nil, function() return i end, function(pos) i = pos end
  end, extra)
end

local file_opts = {
  format = config.enum { "jsonl", "csv", "lines" },
  header = config.boolean(),
  delimiter = config.string(),
  infer_types = config.boolean(),
  max_line = config.size(),
}

local function format_of(path)
  local ext = path:match("%.([%w]+)$")
  ext = ext and ext:lower()
  if ext == "jsonl" or ext == "ndjson" or ext == "json" then
    return "jsonl"
  elseif ext == "csv" then
    return "csv"
  end
  return "lines"
end

local function reader_source(job, where, what, name, opts, reader_opts)
  return add_source(job, where, opts, name, function(env)
    local reader = core.reader_open(reader_opts)
    local report = env.report
    local function finish()
      local skipped, first = reader:skipped()
      if skipped > 0 then
        report.skipped = (report.skipped or 0) + skipped
        report.first_skipped = report.first_skipped or first
      end
    end
    local position, seek
    if reader_opts.path then -- a file can be read again from a position; stdin cannot
      -- the bytes before the position tell, on restore, whether the file
      -- is still the one read (lines appended since are fine: a growing
      -- log goes on where it was)
      local function tail(offset)
        local f = io.open(reader_opts.path, "rb")
        if not f then
          return nil
        end
        local from = math.max(0, offset - 64)
        f:seek("set", from)
        local bytes = f:read(offset - from) or ""
        f:close()
        return bytes
      end
      position = function()
        local offset, line = reader:position()
        return { offset, line, tail(offset) }
      end
      seek = function(pos)
        local offset, line, before = pos[1], pos[2], pos[3]
        local now = tail(offset)
        if before ~= nil and now ~= nil and #now == #before and now ~= before then
          error(("%s: the file changed before byte %d since it was read (replaced or rewritten): "
            .. "it cannot be resumed there"):format(reader_opts.path, offset), 0)
        end
        reader:seek(offset, line)
      end
    end
    return function() return reader:next() end, function() reader:close() end, finish,
      position, seek
  end, { what = what, max_parallelism_one = true, stdin = reader_opts.fd == 0 })
end

function M.from_file(job, path, opts)
  if type(path) ~= "string" or path == "" then
    error("from_file: expected a file path", 2)
  end
  opts = check(opts, file_opts, "from_file")
  local format = opts.format or format_of(path)
  return reader_source(job, "from_file", path, opts.name or ("from_file(" .. basename(path) .. ")"), opts, {
    path = path, format = format, header = opts.header ~= false,
    delimiter = opts.delimiter, infer_types = opts.infer_types ~= false,
    skip_errors = opts.on_error == "skip", max_line = opts.max_line,
  })
end

function M.from_stdin(job, opts)
  opts = check(opts, file_opts, "from_stdin")
  return reader_source(job, "from_stdin", "<stdin>", opts.name or "from_stdin", opts, {
    -- a quiet pipe must not stop the job's clock (timers, idleness), except
    -- on the manual clock, which waits for the sources
    nonblocking = job.config.processing_time ~= "manual",
    fd = 0, format = opts.format or "lines", header = opts.header ~= false,
    delimiter = opts.delimiter, infer_types = opts.infer_types ~= false,
    skip_errors = opts.on_error == "skip", max_line = opts.max_line,
  })
end

-- A source written in Lua: { name =, parallelism =, open = f(ctx),
-- next = f(ctx) -> record or nil at the end, close = f(ctx),
-- snapshot = f(ctx) -> its position after the last record next returned,
-- restore = f(ctx, position), plus the common options (arrival_time,
-- timestamp, watermarks, idleness) }. With snapshot and restore it is
-- replayable: checkpoints store its position.
function M.source(job, custom)
  if type(custom) ~= "table" or type(custom.next) ~= "function" then
    error("source: expected a table with a next function", 2)
  end
  local opts = {}
  for k, v in pairs(custom) do
    if k ~= "open" and k ~= "next" and k ~= "close" and k ~= "snapshot" and k ~= "restore" then
      opts[k] = v
    end
  end
  opts = check(opts, {}, "source")
  return add_source(job, "source", opts, opts.name or "source", function(env)
    local ctx = env.ctx
    local nxt = custom.next
    if custom.open then
      custom.open(ctx)
    end
    -- a custom source is replayable when it can tell and restore its position
    local position = custom.snapshot and function() return custom.snapshot(ctx) end
    local seek = custom.restore and function(pos) custom.restore(ctx, pos) end
    return function() return nxt(ctx) end, custom.close and function() custom.close(ctx) end,
      nil, position, seek
  end)
end

return M
