-- The state backends every state spec runs against (STYLE.md: the same
-- spec runs against every backend, as Redis runs its scripting tests once
-- per engine), and a harness on any of them:
--
--   local backends = require "backends"
--   for _, backend in ipairs(backends) do
--     describe("... on the " .. backend .. " backend", function()
--       local h = backends.harness(backend, { process = fns, key_by = "k" })

local eddy = require "eddy"

local M = { "heap", "rocksdb" }

function M.harness(backend, opts)
  local with = {}
  for k, v in pairs(opts) do
    with[k] = v
  end
  with.backend = backend
  return eddy.harness(with)
end

return M
