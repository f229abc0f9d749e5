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


-- eddy inspect PATH [--operator UID] [--state NAME] [--key K] [--json]:
-- what a checkpoint or savepoint holds (lua/eddy/savepoint.lua reads it).
-- Without filters: a summary of its operators and states, then every
-- entry and timer as a table; with --json, one JSON object per line per
-- entry and timer instead. --key K matches a key shown as K, a string key
-- equal to K, or a number equal to K; for operator state the key is the
-- subtask index.
function M.inspect(...)
  local args = { ... }
  local opts, path = {}, nil
  local i, only_paths = 1, false
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w_-]+)=(.*)$")
    name = name or a:match("^%-%-([%w_-]+)$")
    if only_paths or a == "-" or a:sub(1, 1) ~= "-" then
      if path then
        return usage("'eddy inspect' takes one path")
      end
      path = a
    elseif a == "--" then
      only_paths = true
    elseif name == "json" and value == nil then
      opts.json = true
    elseif name == "operator" or name == "state" or name == "key" then
      if value == nil then
        i = i + 1
        value = args[i]
        if value == nil then
          return usage("option '--%s' of 'eddy inspect' needs a value", name)
        end
      end
      if opts[name] then
        return usage("option '--%s' of 'eddy inspect' is given twice", name)
      end
      opts[name] = value
    else
      return usage("unknown option '%s' for 'eddy inspect'", a)
    end
    i = i + 1
  end
  if not path then
    return usage("'eddy inspect' needs the path of a checkpoint or savepoint")
  end
  local savepoint = require "eddy.savepoint"
  local show = function(v) return require("eddy.inspect")(v, { oneline = true }) end
  local snap = savepoint.open(path, "inspect")

  -- what to show
  local uids = {}
  for _, op in ipairs(snap:operators()) do
    if opts.operator == nil or op.uid == opts.operator then
      uids[#uids + 1] = op.uid
    end
  end
  if #uids == 0 then
    local all = {}
    for _, op in ipairs(snap:operators()) do
      all[#all + 1] = op.uid
    end
    error(("inspect: no operator %s in %s (its operators: %s)"):format(show(opts.operator), path,
      #all > 0 and table.concat(all, ", ") or "none"), 0)
  end
  if opts.state then
    local found, names = false, {}
    for _, uid in ipairs(uids) do
      for _, s in ipairs(snap:states(uid)) do
        found = found or s.name == opts.state
        names[#names + 1] = s.name
      end
    end
    if not found then
      error(("inspect: no state %s in %s%s (its states: %s)"):format(show(opts.state), path,
        opts.operator and (" operator " .. show(opts.operator)) or "",
        #names > 0 and table.concat(names, ", ") or "none"), 0)
    end
  end
  local function key_matches(key)
    local k = opts.key
    if k == nil or key == k then
      return true
    end
    local n = tonumber(k)
    if n ~= nil and type(key) == "number" and key == n then
      return true
    end
    return show(key) == k
  end

  local entries, timers = {}, {}
  for _, uid in ipairs(uids) do
    for _, s in ipairs(snap:states(uid)) do
      if opts.state == nil or s.name == opts.state then
        for key, ns, value, kg in snap:entries(uid, s.name) do
          if key_matches(key) then
            entries[#entries + 1] = { operator = uid, state = s.name, kind = s.kind, key = key,
                                      namespace = ns, key_group = kg, value = value }
          end
        end
      end
    end
    if opts.state == nil then
      for _, t in ipairs(snap:timers(uid)) do
        if key_matches(t.key) then
          t.operator = uid
          timers[#timers + 1] = t
        end
      end
    end
  end

  if opts.json then
    local function json(v)
      if v == nil then
        return "null"
      end
      local ok, text = pcall(core.json, v)
      return ok and text or core.json(show(v)) -- what JSON cannot hold, as text
    end
    for _, e in ipairs(entries) do
      io.stdout:write(('{"operator":%s,"state":%s,"kind":%s,"key":%s,"namespace":%s,'
        .. '"key_group":%s,"value":%s}\n'):format(json(e.operator), json(e.state), json(e.kind),
        json(e.key), json(e.namespace), json(e.key_group), json(e.value)))
    end
    for _, t in ipairs(timers) do
      io.stdout:write(('{"operator":%s,"timer":%s,"key":%s,"namespace":%s,"key_group":%s,'
        .. '"ts":%s}\n'):format(json(t.operator), json(t.kind), json(t.key), json(t.namespace),
        json(t.key_group), json(t.ts)))
    end
    snap:close()
    return 0
  end

  if opts.state or opts.key then
    print((snap:summary(opts.operator):match("^[^\n]*\n[^\n]*\n[^\n]*")))
  else
    print(snap:summary(opts.operator))
  end
  if #entries > 0 then
    local rows = { { "OPERATOR", "STATE", "KIND", "KEY", "NAMESPACE", "VALUE" } }
    for _, e in ipairs(entries) do
      rows[#rows + 1] = { e.operator, e.state, e.kind,
        e.kind == "operator" and ("subtask " .. e.key) or show(e.key),
        e.namespace ~= nil and show(e.namespace) or "-", show(e.value) }
    end
    print()
    print(savepoint.columns(rows))
  end
  if #timers > 0 then
    local rows = { { "OPERATOR", "TIMER", "KEY", "NAMESPACE", "TIMESTAMP" } }
    for _, t in ipairs(timers) do
      rows[#rows + 1] = { t.operator, t.kind, show(t.key),
        t.namespace ~= nil and show(t.namespace) or "-", tostring(t.ts) }
    end
    print()
    print(savepoint.columns(rows))
  end
  if #entries == 0 and #timers == 0 then
    print()
    print(opts.key and ("no entries with key " .. opts.key) or "no entries")
  end
  snap:close()
  return 0
end

return M
