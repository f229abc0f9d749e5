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

function M.key_group(key, max_parallelism)
  return core.key_group(key, max_parallelism)
end

-- What `eddy run` was told on its command line (-p, -D, -s ...): the
-- defaults of every job the script creates. The script's own settings win.
local cli_defaults = {}

function M._cli_defaults(opts)
  cli_defaults = opts or {}
end

function M.job(config)
  if cli_defaults.restore or cli_defaults.resume then
    error("eddy run: restoring (-s, --resume) is not available in this version of eddy", 2)
  end
  if cli_defaults.detached then
    error("eddy run: --detached is not available in this version of eddy", 2)
  end
  if cli_defaults.trace then
    error("eddy run: --trace (barrier tracing) is not available in this version of eddy", 2)
  end
  local job = require "eddy.job"
  return job.new(config, { parallelism = cli_defaults.parallelism, flink = cli_defaults.flink })
end

function M.harness(config)
  return require("eddy.harness").new(config)
end

function M.ttl(config)
  return require("eddy.config").ttl(config, 3)
end

local function unavailable(name)
  return function()
    error(name .. " is not available in this version of eddy", 2)
  end
end

M.watermarks = {
  bounded = unavailable("eddy.watermarks.bounded"),
  monotonous = unavailable("eddy.watermarks.monotonous"),
  none = unavailable("eddy.watermarks.none"),
}
M.windows = {
  tumbling = unavailable("eddy.windows.tumbling"),
  sliding = unavailable("eddy.windows.sliding"),
  session = unavailable("eddy.windows.session"),
}
M.savepoint = { load = unavailable("eddy.savepoint.load") }

return M
