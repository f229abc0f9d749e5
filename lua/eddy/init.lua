-- eddy: Flink's state model in Lua. This is the module's front door: the
-- functions of API.md, over the C core (eddy.core) and the Lua parts in
-- this folder.

local core = require "eddy.core"

local M = {}

M.version = "0.1.0"

M.inspect = require "eddy.inspect"
M.encode = core.encode
M.decode = core.decode
M.key_group_range = core.key_group_range
M.operator_index = core.operator_index

M.key_group = core.key_group

-- What `eddy run` was told on its command line (-p, -D, -s ...): the
-- defaults of every job the script creates. The script's own settings win.
local cli_defaults = {}

function M._cli_defaults(opts)
  cli_defaults = opts or {}
end

function M.job(config)
  if cli_defaults.restore and cli_defaults.resume then
    error("eddy run: give either -s PATH or --resume, not both", 2)
  end
  -- not a tail call: error levels count on this frame being here
  local job = require("eddy.job").new(config, { parallelism = cli_defaults.parallelism,
                                                flink = cli_defaults.flink })
  -- what the command line asks of this run wins over the script
  local conf = job.config
  if cli_defaults.restore then
    conf.restore = cli_defaults.restore
  end
  if cli_defaults.allow_non_restored_state then
    conf.allow_non_restored_state = true
  end
  if cli_defaults.trace then
    conf.trace = true
  end
  job._resume = cli_defaults.resume
  -- eddy run -d: {fd =, log =}, shared by the jobs of the script (the
  -- first one reports its id on fd)
  job._detached = cli_defaults.detached
  return job
end

function M.harness(config)
  local h = require("eddy.harness").new(config)
  return h
end

function M.ttl(config)
  local ttl = require("eddy.config").ttl(config, 3)
  return ttl
end

local function unavailable(name)
  return function()
    error(name .. " is not available in this version of eddy", 2)
  end
end

do
  local time = require "eddy.time"
  M.watermarks = { bounded = time.bounded, monotonous = time.monotonous, none = time.none }
end
do
  local windows = require "eddy.windows"
  M.windows = { tumbling = windows.tumbling, sliding = windows.sliding, session = windows.session,
                operator = windows.operator }
end
M.savepoint = { load = require("eddy.savepoint").load }

return M
