-- Job: the configuration and graph of one streaming job, and running it.
-- eddy.job{...} makes one; sources (eddy.sources) start streams on it;
-- job:run() compiles the graph (eddy.plan) and runs it to the end of its
-- bounded input.

local config = require "eddy.config"
local core = require "eddy.core"
local plan = require "eddy.plan"
local restart = require "eddy.restart"
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

-- A job id as Flink has them: 32 hex digits, new for every job.
local function new_job_id()
  return core.random_hex(16)
end

local function default_checkpoint_dir()
  return (os.getenv("TMPDIR") or "/tmp") .. "/eddy-checkpoints"
end

-- Where this job's checkpoints go: <dir>/<job id>.
function Job:checkpoint_folder()
  local ck = self.config.checkpoint
  local dir = (ck.dir or default_checkpoint_dir()):gsub("^file://", "")
  return dir .. "/" .. self.job_id
end

-- What the checkpoints of a finished, failed or cancelled job become:
-- Flink's externalized checkpoint retention (SEMANTICS.md section 7).
local discard_on = {
  none = { finished = true, failed = true, cancelled = true },
  delete_on_cancellation = { finished = true, cancelled = true },
  retain_on_cancellation = { finished = true },
}

function Job:_end_checkpoints(outcome)
  local ck = self.config.checkpoint
  if ck.interval and discard_on[ck.externalized][outcome] then
    core.checkpoints_discard(self:checkpoint_folder())
  end
end

-- Per vertex: records in and out, and the keyed state's figures where the
-- backend has them (RocksDB: state = { [name] = {estimated_keys =,
-- live_sst_bytes =, memtable_bytes =, block_cache_bytes =} }, summed over
-- the subtasks; each subtask's own under subtasks[i].state).
local function metrics_of(vertices, stats, started)
  local metrics = { duration_ms = core.monotonic_ms() - started, vertices = {}, skipped = {} }
  for i, v in ipairs(vertices) do
    local in_total, out_total, state = 0, 0, nil
    for _, st in ipairs(stats[i].subtasks) do
      in_total = in_total + st.records_in
      out_total = out_total + st.records_out
      for name, figures in pairs(st.state or {}) do
        state = state or {}
        local sum = state[name] or {}
        for k, n in pairs(figures) do
          sum[k] = (sum[k] or 0) + n
        end
        state[name] = sum
      end
    end
    metrics.vertices[i] = {
      name = v.name, parallelism = v.parallelism, records_in = in_total,
      records_out = out_total, subtasks = stats[i].subtasks, state = state,
    }
  end
  return metrics
end

local function parent_of(path)
  return (path:gsub("/+$", ""):match("^(.*)/[^/]*$")) or "."
end

local function base_name(path)
  return path:gsub("/+$", ""):match("([^/]*)$")
end

local function checkpoint_info(path, where)
  local ok, info = pcall(core.checkpoint_info, path)
  if not ok then
    error(where .. ": " .. tostring(info), 0)
  end
  return info
end

-- The newest usable checkpoint of the job named `name` under dir: a job
-- folder, or a checkpoint folder holding the folders of several jobs.
-- Returns its info and its job folder, or nil when there is none.
local function latest_of(dir, name)
  dir = dir:gsub("^file://", "")
  local ok, entries = pcall(core.checkpoints_list, dir)
  if not ok then
    error("eddy run --resume: " .. tostring(entries), 0)
  end
  local folders, seen = {}, {}
  for _, e in ipairs(entries) do
    local folder = parent_of(e.path)
    if e.state == "completed" and e.kind == "checkpoint" and not seen[folder] then
      seen[folder] = true
      folders[#folders + 1] = folder
    end
  end
  local explicit = #folders == 1 and folders[1] == dir:gsub("/+$", "")
  local best, best_folder
  for _, folder in ipairs(folders) do
    local path, damaged = core.checkpoint_latest(folder)
    for _, msg in ipairs(damaged) do
      io.stderr:write("eddy: " .. msg .. "\n")
    end
    if path then
      local info = checkpoint_info(path, "eddy run --resume")
      if (explicit or info.job_name == name) and (best == nil or info.time > best.time) then
        best, best_folder = info, folder
      end
    end
  end
  return best, best_folder
end

-- Where the first attempt starts: from conf.restore (a checkpoint folder
-- or its _metadata), or, for `eddy run --resume`, from the latest retained
-- checkpoint of this job, whose folder the job then goes on writing into.
-- Sets the job id; returns the path to restore from (or nil) and the id of
-- the first checkpoint (ids continue after the restored one).
function Job:_starting_point(vertices)
  local conf = self.config
  if conf.restore then
    local info = checkpoint_info(conf.restore, "eddy.job: restore")
    plan.check_restore(self, vertices, info)
    self.job_id = new_job_id()
    return info.path, info.id + 1
  end
  if self._resume then
    local dir = type(self._resume) == "string" and self._resume
      or conf.checkpoint.dir or default_checkpoint_dir()
    local info, folder = latest_of(dir, conf.name)
    if info then
      plan.check_restore(self, vertices, info)
      self.job_id = base_name(folder)
      io.stderr:write(("eddy: resuming %s from %s\n"):format(conf.name, info.path))
      -- ids are never reused: not even those of damaged checkpoints passed
      -- over, whose folders are still there
      local highest = info.id
      for _, e in ipairs(core.checkpoints_list(folder)) do
        if e.id > highest then
          highest = e.id
        end
      end
      return info.path, highest + 1
    end
    io.stderr:write(("eddy: no completed checkpoint of %s in %s: starting from the beginning\n")
      :format(conf.name, dir))
  end
  self.job_id = new_job_id()
  return nil, 1
end

-- State is matched by operator uid when a job restores. A source or a
-- transactional sink without one keeps its state under a uid made from its
-- place in the graph, which changes when operators are added before it:
-- as Flink's documentation urges, say so when state is being kept.
function Job:_warn_generated_uids()
  for _, n in ipairs(self.nodes) do
    if n.uid == nil and (n.kind == "source" or n.stateful) then
      io.stderr:write(("eddy: warning: %s has no uid; its state is kept under the generated "
        .. "uid %q, which changes when the job's graph does (give it one with :uid(name))\n")
        :format(n.label or n.name, plan.state_uid(n)))
    end
  end
end

-- One attempt: a fresh runtime job from the graph, with checkpoints and a
-- checkpoint to start from. Returns ok, error, the runtime job.
function Job:_attempt(vertices, restore_from, next_id, failures, savepoint_at_end)
  local conf = self.config
  local ck = conf.checkpoint
  for _, n in ipairs(self.nodes) do
    self.reports[n] = {}
  end
  self._restoring = restore_from ~= nil
  local cj = plan.build(self, vertices)
  -- the coordinator is there without periodic checkpoints too: it takes
  -- savepoints
  local ok, err = pcall(cj.enable_checkpoints, cj, {
    interval = ck.interval or 0, timeout = ck.timeout, min_pause = ck.min_pause,
    max_concurrent = ck.max_concurrent, mode = ck.mode, unaligned = ck.unaligned,
    aligned_timeout = ck.aligned_timeout, tolerable_failures = ck.tolerable_failures,
    retained = ck.retained,
    dir = ck.interval and (ck.dir or default_checkpoint_dir()):gsub("^file://", "") or nil,
    job_id = self.job_id, name = conf.name, compression = ck.compression, level = ck.zstd_level,
    next_id = next_id, failures = failures, trace = conf.trace,
  })
  if not ok then
    error(("eddy.job: checkpoint.dir: cannot keep checkpoints in %s: %s"):format(
      ck.dir or default_checkpoint_dir(), tostring(err):gsub("^eddy: ", "")), 0)
  end
  if restore_from then
    cj:restore(restore_from)
  end
  if savepoint_at_end then
    cj:stop_with_savepoint_at_end(savepoint_at_end)
  end
  self._cj = cj
  ok, err = pcall(cj.run, cj, self._control)
  self._cj = nil
  return ok, err, cj
end

-- Job control (`eddy list/info/savepoint/stop/cancel`): a control socket
-- and a status file for the run, unless `control = false`. A job started
-- by `eddy run -d` must have one (the id it prints comes from here); for
-- any other, a control folder that cannot be used is a warning, once.
local control_warned = false

function Job:_open_control()
  local conf = self.config
  local detached = self._detached
  if not conf.control and not detached then
    return nil
  end
  local log = detached and detached.log
  if log and log:match("/run%-%d+%.log$") then
    -- the first job of a detached run names the log after itself
    local named = log:gsub("[^/]*$", self.job_id .. ".log")
    if os.rename(log, named) then
      log = named
      detached.log = named
    end
  end
  local ctl, err = core.control_open {
    id = self.job_id, name = conf.name, log = log,
    savepoint_dir = conf.savepoint_dir and conf.savepoint_dir:gsub("^file://", ""),
    checkpoint_interval = conf.checkpoint.interval,
    notify_fd = detached and detached.fd,
  }
  if detached then
    detached.fd = nil -- written and closed: only the first job reports its id
    if not ctl then
      error("eddy run --detached: " .. err, 0)
    end
  elseif not ctl and not control_warned then
    control_warned = true
    io.stderr:write(("eddy: warning: %s runs without job control: %s\n"):format(conf.name, err))
  end
  return ctl
end

-- The folder savepoints go to when none is named: savepoint_dir, else the
-- current folder.
function Job:_savepoint_dir(dir)
  return ((dir or self.config.savepoint_dir or "."):gsub("^file://", ""))
end

-- job:savepoint([dir]) while the job runs (from a function of the job):
-- a savepoint is taken at the next round; the run's result lists it.
function Job:savepoint(dir)
  if dir ~= nil and type(dir) ~= "string" then
    error("job:savepoint: expected a folder", 2)
  end
  if not self._cj then
    error("job:savepoint: the job is not running", 2)
  end
  local ok, err = pcall(self._cj.savepoint, self._cj, self:_savepoint_dir(dir))
  if not ok then
    error("job:savepoint: " .. tostring(err), 2)
  end
end

-- Runs to the end of the bounded input, restarting after failures as the
-- restart strategy says, from the latest completed checkpoint. Returns
-- { metrics =, checkpoints = }.
function Job:run(opts)
  opts = config.check_options(opts or {}, run_opts, "job:run", 3)
  local savepoint_at_end = opts.savepoint and self:_savepoint_dir(opts.savepoint)
  if self._ran then
    error("job:run: this job has already run; build a new job to run again", 2)
  end
  local vertices = plan.compile(self)
  if #vertices == 0 then
    error("job:run: the job has no sources", 2)
  end
  self._ran = true
  local conf = self.config
  local checkpointing = conf.checkpoint.interval ~= nil
  if checkpointing then
    for _, n in ipairs(self.nodes) do
      if n.stdin then
        io.stderr:write("eddy: from_stdin cannot be replayed: after a failure, what it read "
          .. "since the last checkpoint is lost\n")
      end
    end
  end
  local strategy = restart.new(conf.restart)
  local restore_from, next_id = self:_starting_point(vertices)
  if checkpointing or savepoint_at_end or restore_from then
    self:_warn_generated_uids()
  end
  local failures = 0
  local initial = restore_from
  local started = core.monotonic_ms()
  local history = {}
  self._checkpoints = history
  -- closed with the error that ends the run, if one does: the status file
  -- then says FAILED or CANCELED (src/lua/control.c)
  local control <close> = self:_open_control()
  self._control = control
  local cj
  while true do
    local ok, err
    ok, err, cj = self:_attempt(vertices, restore_from, next_id, failures, savepoint_at_end)
    for _, c in ipairs(cj:checkpoints()) do
      history[#history + 1] = c
    end
    next_id = cj:next_checkpoint_id()
    failures = cj:checkpoint_failures()
    if ok then
      break
    end
    if err == "interrupted" or err == "cancelled" then
      self:_end_checkpoints("cancelled")
      error(err, 0)
    end
    local delay, why = strategy:on_failure(core.monotonic_ms())
    if delay == nil then
      self:_end_checkpoints("failed")
      error(err, 0)
    end
    io.stderr:write(("eddy: %s failed: %s\n"):format(conf.name, err))
    -- the latest completed checkpoint of this run, else where the run began
    restore_from = initial
    if checkpointing then
      local latest, damaged = core.checkpoint_latest(self:checkpoint_folder())
      for _, msg in ipairs(damaged) do
        io.stderr:write("eddy: " .. msg .. "\n")
      end
      restore_from = latest or initial
    end
    io.stderr:write(("eddy: restarting %s in %d ms (%s)\n"):format(
      restore_from and ("from " .. restore_from) or "from the beginning", delay, why))
    if control then
      -- still answering (info, cancel) while it waits
      if control:serve(delay, "RESTARTING") then
        self:_end_checkpoints("cancelled")
        error("cancelled", 0)
      end
    else
      core.sleep_ms(delay)
    end
  end
  self:_end_checkpoints("finished")
  local metrics = metrics_of(vertices, cj:stats(), started)
  for _, n in ipairs(self.nodes) do
    local r = self.reports[n]
    if r.skipped then
      metrics.skipped[n.what or n.name] = r.skipped
      io.stderr:write(("eddy: %s: skipped %d malformed record%s (first: %s)\n")
        :format(n.what or n.name, r.skipped, r.skipped == 1 and "" or "s", r.first_skipped))
    end
  end
  self._metrics = metrics
  local stopped, savepoint = cj:stopped()
  if savepoint_at_end and not stopped then
    error("job:run: the job ended before its savepoint was taken", 2)
  end
  self._control = nil
  if control then
    control:finish(stopped and "STOPPED" or "FINISHED", stopped and savepoint or nil)
  end
  return { metrics = metrics, checkpoints = history, savepoint = stopped and savepoint or nil }
end

-- The checkpoints of the last run, in trigger order, also after it failed:
-- { {id =, status = "completed" | "failed" | "pending", triggered =,
-- duration_ms =, sync_ms =, alignment_ms =, bytes =, state_size =, path =, failure =} }
function Job:checkpoints()
  return self._checkpoints or {}
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
