-- The sources of API.md, added to Job as methods. Each makes a "source"
-- node whose build(env) gives a subtask's instance with
--   poll(budget) -> finished   emit up to budget records through env.emit
-- Sources with several subtasks split their input deterministically: subtask
-- i of p takes records i+1, i+1+p, ... (collection, generator).

local core = require "eddy.core"
local config = require "eddy.config"
local stream = require "eddy.stream"

local M = {}

local function add_source(job, name, build, extra)
  local node = { kind = "source", name = name, build = build, inputs = {} }
  for k, v in pairs(extra or {}) do
    node[k] = v
  end
  job:_add(node)
  return stream.wrap(job, node)
end

local function basename(path)
  return (path:match("([^/]+)/*$")) or path
end

local collection_opts = {
  parallelism = config.integer { min = 1, max = 32768 },
  name = config.string(),
}

function M.from_collection(job, array, opts)
  if type(array) ~= "table" then
    error("from_collection: expected an array of records, got " .. type(array), 2)
  end
  opts = config.check_options(opts or {}, collection_opts, "from_collection", 3)
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
  local s = add_source(job, opts.name or "from_collection", function(env)
    local decode, emit = core.decode, env.emit
    local step = env.task:parallelism()
    local i = env.task:index() + 1
    return {
      poll = function(budget)
        for _ = 1, budget do
          if i > n then
            return true
          end
          emit(decode(bytes[i]))
          i = i + step
        end
        return i > n
      end,
    }
  end)
  if opts.parallelism then
    s:parallelism(opts.parallelism)
  end
  return s
end

local generator_opts = {
  count = config.integer { min = 0 },
  rate = config.number { above = 0 },
  fn = config.fn(),
  parallelism = config.integer { min = 1, max = 32768 },
  name = config.string(),
}

-- Records 1..count (or forever without count), each fn(i) or i itself,
-- at most `rate` per second over all subtasks.
function M.from_generator(job, opts)
  opts = config.check_options(opts or {}, generator_opts, "from_generator", 3)
  local count, rate, fn = opts.count, opts.rate, opts.fn
  local s = add_source(job, opts.name or "from_generator", function(env)
    local emit, task = env.emit, env.task
    local step = task:parallelism()
    local i = task:index() + 1
    local per_task = rate and rate / step
    local started, emitted
    return {
      poll = function(budget)
        for _ = 1, budget do
          if count and i > count then
            return true
          end
          if per_task then
            local now = core.monotonic_ms()
            started = started or now
            emitted = emitted or 0
            local due = started + emitted * 1000 / per_task
            if now < due then
              -- wait a little, then give the other subtasks their turn
              core.sleep_ms(math.min(due - now, 50))
              return false
            end
            emitted = emitted + 1
          end
          local v = i
          if fn then
            v = fn(i)
            if v == nil then
              error(("from_generator: fn returned nil for %d"):format(i), 0)
            end
          end
          emit(v)
          i = i + step
        end
        return count ~= nil and i > count
      end,
    }
  end)
  if opts.parallelism then
    s:parallelism(opts.parallelism)
  end
  return s
end

local file_opts = {
  format = config.enum { "jsonl", "csv", "lines" },
  header = config.boolean(),
  delimiter = config.string(),
  infer_types = config.boolean(),
  on_error = config.enum { "fail", "skip" },
  max_line = config.size(),
  name = config.string(),
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

local function reader_source(job, what, name, reader_opts, extra)
  extra.what = what
  return add_source(job, name, function(env)
    local emit = env.emit
    local reader = core.reader_open(reader_opts)
    local report = env.report
    return {
      poll = function(budget)
        for _ = 1, budget do
          local v = reader:next()
          if v == nil then
            return true
          end
          emit(v)
        end
        return false
      end,
      finish = function()
        local skipped, first = reader:skipped()
        if skipped > 0 then
          report.skipped = (report.skipped or 0) + skipped
          report.first_skipped = report.first_skipped or first
        end
      end,
      close = function() reader:close() end,
    }
  end, extra)
end

function M.from_file(job, path, opts)
  if type(path) ~= "string" or path == "" then
    error("from_file: expected a file path", 2)
  end
  opts = config.check_options(opts or {}, file_opts, "from_file", 3)
  local format = opts.format or format_of(path)
  return reader_source(job, path, opts.name or ("from_file(" .. basename(path) .. ")"), {
    path = path, format = format, header = opts.header ~= false,
    delimiter = opts.delimiter, infer_types = opts.infer_types ~= false,
    skip_errors = opts.on_error == "skip", max_line = opts.max_line,
  }, { default_parallelism = 1, max_parallelism_one = true })
end

function M.from_stdin(job, opts)
  opts = config.check_options(opts or {}, file_opts, "from_stdin", 3)
  return reader_source(job, "<stdin>", opts.name or "from_stdin", {
    fd = 0, format = opts.format or "lines", header = opts.header ~= false,
    delimiter = opts.delimiter, infer_types = opts.infer_types ~= false,
    skip_errors = opts.on_error == "skip", max_line = opts.max_line,
  }, { default_parallelism = 1, max_parallelism_one = true, stdin = true })
end

-- A source written in Lua: { name =, parallelism =, open = f(ctx),
-- next = f(ctx) -> record or nil at the end, close = f(ctx) }. Offsets
-- (snapshot/restore) come with checkpoints.
function M.source(job, custom)
  if type(custom) ~= "table" or type(custom.next) ~= "function" then
    error("source: expected a table with a next function", 2)
  end
  for k, v in pairs(custom) do
    if k ~= "name" and k ~= "parallelism" and type(v) ~= "function" then
      error(("source: '%s' must be a function"):format(tostring(k)), 2)
    end
  end
  local s = add_source(job, custom.name or "source", function(env)
    local ctx = env.ctx
    local emit, nxt = env.emit, custom.next
    if custom.open then
      custom.open(ctx)
    end
    return {
      poll = function(budget)
        for _ = 1, budget do
          local v = nxt(ctx)
          if v == nil then
            return true
          end
          emit(v)
        end
        return false
      end,
      close = custom.close and function() custom.close(ctx) end,
    }
  end)
  if custom.parallelism then
    s:parallelism(custom.parallelism)
  end
  return s
end

return M
