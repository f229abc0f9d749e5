-- The eddy subcommands written in Lua. bin/eddy calls
-- commands[name](args...); a returned integer is the exit status, an error
-- is reported as "eddy: <message>" with status 1.

local core = require "eddy.core"

local M = {}

local function usage(fmt, ...)
  io.stderr:write("eddy: ", fmt:format(...), " (see 'eddy --help')\n")
  return 2
end

local function human_size(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do
    n = n / 1024
    i = i + 1
  end
  return i == 1 and ("%d B"):format(n) or ("%.1f %s"):format(n, units[i])
end

local function local_time(ms)
  return os.date("%Y-%m-%d %H:%M:%S", ms // 1000) .. (".%03d"):format(ms % 1000)
end

-- eddy checkpoints [--verify] DIR: every checkpoint and savepoint under
-- DIR (a checkpoint dir, one job's folder, or one checkpoint), one per
-- line; --verify reads every file to check its checksum.
function M.checkpoints(...)
  local args = { ... }
  local verify, dir = false, nil
  for _, a in ipairs(args) do
    if a == "--verify" then
      verify = true
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return usage("unknown option '%s' for 'eddy checkpoints'", a)
    elseif dir then
      return usage("'eddy checkpoints' takes one folder")
    else
      dir = a
    end
  end
  if not dir then
    return usage("'eddy checkpoints' needs a folder")
  end
  local entries = core.checkpoints_list(dir, verify)
  if #entries == 0 then
    print(("no checkpoints in %s"):format(dir))
    return 0
  end
  local rows = { { "JOB", "ID", "NAME", "KIND", "STATE", "TIME", "SIZE" } }
  for _, e in ipairs(entries) do
    rows[#rows + 1] = {
      e.job or "-", e.id >= 0 and tostring(e.id) or "-", e.name, e.kind or "-",
      e.state, local_time(e.time), human_size(e.size), problem = e.problem,
    }
  end
  local widths = {}
  for _, r in ipairs(rows) do
    for i, cell in ipairs(r) do
      widths[i] = math.max(widths[i] or 0, #cell)
    end
  end
  for _, r in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(r) do
      -- numbers and sizes read best aligned right
      local right = i == 2 or i == #r
      cells[i] = (right and "%" or "%-") .. widths[i] .. "s"
      cells[i] = cells[i]:format(cell)
    end
    print((table.concat(cells, "  "):gsub("%s+$", "")))
    if r.problem then
      print("    " .. r.problem)
    end
  end
  return 0
end

return M
