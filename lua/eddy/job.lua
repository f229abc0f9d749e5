-- Job: the configuration and graph of one streaming job, and running it.
-- eddy.job{...} makes one; sources (eddy.sources) start streams on it;
-- job:run() compiles the graph (eddy.plan) and runs it to the end of its
-- bounded input.

local config = require "eddy.config"
local core = require "eddy.core"
local plan = require "eddy.plan"
local sources = require "eddy.sources"
require "eddy.sinks"

local M = {}

local Job = {}
Job.__index = Job
M.Job = Job

-- Features whose configuration is accepted (so that typos are caught and
-- scripts written for later versions read well) but which this version
-- cannot run yet: refuse them plainly instead of ignoring them.
local function refuse_unavailable(conf)
  local function no(what)
    error("eddy.job: " .. what .. " is not available in this version of eddy", 5)
  end
  if conf.executor == "threads" then
    no("executor 'threads'")
  end
  if conf.state_backend and conf.state_backend.type == "rocksdb" then
    no("the rocksdb state backend")
  end
  if conf.checkpoint and conf.checkpoint.interval then
    no("checkpointing (checkpoint.interval)")
  end
  if conf.restart and conf.restart.strategy ~= "none" then
    no("the restart strategy '" .. conf.restart.strategy .. "'")
  end
  if conf.restore then
    no("restoring from a savepoint or checkpoint (restore)")
  end
  if conf.trace then
    no("barrier tracing (trace)")
  end
end

function M.new(tbl, defaults)
  if tbl ~= nil and type(tbl) ~= "table" then
    error("eddy.job: expected a table of settings, got " .. type(tbl), 3)
  end
  local conf = config.job(tbl or {}, defaults, 4)
  refuse_unavailable(conf)
  return setmetatable({ config = conf, nodes = {}, reports = {} }, Job)
end

function Job:_add(node)
  if self._ran then
    error("this job has already run; build a new job to run again", 0)
  end
  node.id = #self.nodes + 1
  self.nodes[node.id] = node
  return node
end

Job.from_collection = sources.from_collection
Job.from_generator = sources.from_generator
Job.from_file = sources.from_file
Job.from_stdin = sources.from_stdin
Job.source = sources.source

local run_opts = { savepoint = config.string() }

-- Runs to the end of the bounded input. Returns { metrics =, checkpoints = }.
function Job:run(opts)
  opts = config.check_options(opts or {}, run_opts, "job:run", 3)
  if opts.savepoint then
    error("job:run: stopping with a savepoint is not available in this version of eddy", 2)
  end
  if self._ran then
    error("job:run: this job has already run; build a new job to run again", 2)
  end
  local vertices = plan.compile(self)
  if #vertices == 0 then
    error("job:run: the job has no sources", 2)
  end
  self._ran = true
  for _, n in ipairs(self.nodes) do
    self.reports[n] = {}
  end
  local started = core.monotonic_ms()
  local stats = plan.run(self, vertices)
  local metrics = { duration_ms = core.monotonic_ms() - started, vertices = {}, skipped = {} }
  for i, v in ipairs(vertices) do
    local in_total, out_total = 0, 0
    for _, st in ipairs(stats[i].subtasks) do
      in_total = in_total + st.records_in
      out_total = out_total + st.records_out
    end
    metrics.vertices[i] = {
      name = v.name, parallelism = v.parallelism, records_in = in_total,
      records_out = out_total, subtasks = stats[i].subtasks,
    }
  end
  for _, n in ipairs(self.nodes) do
    local r = self.reports[n]
    if r.skipped then
      metrics.skipped[n.what or n.name] = r.skipped
      io.stderr:write(("eddy: %s: skipped %d malformed record%s (first: %s)\n")
        :format(n.what or n.name, r.skipped, r.skipped == 1 and "" or "s", r.first_skipped))
    end
  end
  self._metrics = metrics
  return { metrics = metrics, checkpoints = {} }
end

function Job:graph()
  return plan.describe(self, plan.compile(self))
end

-- Metrics of the last run (empty before it).
function Job:metrics()
  return self._metrics or { vertices = {}, skipped = {} }
end

function Job:__tostring()
  return ("eddy.Job %q"):format(self.config.name)
end

return M
