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
        for key, ns, value, kg in snap:entries(uid, s.name, s.kind) do
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

---------------------------------------------------------------------------
-- Job control: eddy list, info, savepoint, stop, cancel. The jobs are the
-- status files of the control folder (lua/eddy/control.c reads them); a
-- running job is asked through its control socket, one request per
-- connection (src/runtime/control.h has the protocol).

-- Rows of cells as aligned columns; right[i] aligns column i right.
local function table_text(rows, right, indent)
  local widths = {}
  for _, r in ipairs(rows) do
    for i, cell in ipairs(r) do
      widths[i] = math.max(widths[i] or 0, #cell)
    end
  end
  local out = {}
  for _, r in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(r) do
      cells[i] = ((right and right[i]) and "%" or "%-") .. widths[i] .. "s"
      cells[i] = cells[i]:format(cell)
    end
    out[#out + 1] = ((indent or "") .. table.concat(cells, "  ")):gsub("%s+$", "")
  end
  return table.concat(out, "\n")
end

-- Seconds a job may take to answer: EDDY_CONTROL_TIMEOUT, else a default
-- (a savepoint of a large state takes a while).
local function timeout_ms(default_s)
  local v = os.getenv("EDDY_CONTROL_TIMEOUT")
  local n = v and tonumber(v)
  if v and v ~= "" and (not n or n <= 0) then
    error(("EDDY_CONTROL_TIMEOUT: expected a number of seconds, got %q"):format(v), 0)
  end
  return math.floor((n or default_s) * 1000)
end

local function all_jobs()
  local jobs, dir = core.control_jobs()
  if not jobs then
    error(dir, 0)
  end
  return jobs, dir
end

local function short_id(id)
  return id:sub(1, 8)
end

local function job_label(j)
  return ("%s (%s)"):format(j.id, j.name or "?")
end

-- The job JOB names: a job id, a unique prefix of one, or a job's name.
-- Only running jobs unless any_state, and then a running one is preferred,
-- else the latest to have started.
local function find_job(cmd, arg, any_state)
  local jobs = all_jobs()
  local function pick(match)
    local running, others = {}, {}
    for _, j in ipairs(jobs) do
      if match(j) then
        local list = j.state == "RUNNING" and running or others
        list[#list + 1] = j
      end
    end
    return running, others
  end
  local function ambiguous(what, list)
    local ids = {}
    for _, j in ipairs(list) do
      ids[#ids + 1] = short_id(j.id)
    end
    error(("%s: %s %q matches %d running jobs (%s): give more of the id"):format(
      cmd, what, arg, #list, table.concat(ids, ", ")), 0)
  end
  for _, by in ipairs { "id", "prefix", "name" } do
    local running, others = pick(function(j)
      if by == "id" then
        return j.id == arg
      elseif by == "prefix" then
        return #arg > 0 and j.id:sub(1, #arg) == arg
      end
      return j.name == arg
    end)
    if #running > 1 then
      ambiguous(by == "name" and "name" or "id", running)
    elseif #running == 1 then
      return running[1]
    elseif #others > 0 then
      if any_state then
        return others[1]
      end
      local j = others[1]
      error(("%s: job %s is not running: it ended %s%s"):format(cmd, job_label(j), j.state,
        j["end"] and (" at " .. local_time(j["end"])) or ""), 0)
    end
  end
  error(("%s: no %sjob %q (eddy list%s shows them)"):format(cmd,
    any_state and "" or "running ", arg, any_state and " -a" or ""), 0)
end

-- Sends a request to a running job; its answer, or a one-line error.
local function ask(cmd, j, req, default_timeout_s)
  local reply, err = core.control_request(j.socket, req, timeout_ms(default_timeout_s))
  if not reply then
    error(("%s: job %s: %s"):format(cmd, short_id(j.id), err), 0)
  end
  if not reply.ok then
    error(("%s: job %s: %s"):format(cmd, short_id(j.id), reply.error or "failed"), 0)
  end
  return reply
end

local function folder_arg(dir)
  return core.absolute_path((dir:gsub("^file://", "")))
end

-- Parses args by a table of options: name -> "flag" | "value". Returns the
-- options found, the other arguments, or nil and a usage message.
local function parse(cmd, args, spec)
  local opts, rest = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^(%-%-?[%w-]+)=(.*)$")
    name = name or a
    local kind = spec[name]
    if kind == nil and a:sub(1, 1) == "-" and a ~= "-" then
      return nil, ("unknown option '%s' for 'eddy %s'"):format(a, cmd)
    elseif kind == nil then
      rest[#rest + 1] = a
    elseif kind == "flag" then
      if value ~= nil then
        return nil, ("option '%s' of 'eddy %s' takes no value"):format(name, cmd)
      end
      opts[name] = true
    else
      if value == nil then
        i = i + 1
        value = args[i]
      end
      if value == nil or value == "" then
        return nil, ("option '%s' of 'eddy %s' needs a folder"):format(name, cmd)
      end
      opts[name] = value
    end
    i = i + 1
  end
  return opts, rest
end

-- eddy list [-a]: running jobs, newest first; -a also those that ended.
function M.list(...)
  local opts, rest = parse("list", { ... }, { ["-a"] = "flag", ["--all"] = "flag" })
  if not opts then
    return usage("%s", rest)
  end
  if #rest > 0 then
    return usage("'eddy list' takes no arguments, got '%s'", rest[1])
  end
  local all = opts["-a"] or opts["--all"]
  local rows = { { "JOB ID", "NAME", "STATE", "STARTED" } }
  if all then
    rows[1][5] = "ENDED"
  end
  for _, j in ipairs(all_jobs()) do
    if all or j.state == "RUNNING" then
      local r = { j.id, j.name or "?", j.state or "?", j.start and local_time(j.start) or "-" }
      if all then
        r[5] = j["end"] and local_time(j["end"]) or "-"
      end
      rows[#rows + 1] = r
    end
  end
  if #rows == 1 then
    print(all and "no jobs" or "no running jobs")
  else
    print(table_text(rows))
  end
  return 0
end

local function duration_text(ms)
  if ms < 1000 then
    return ("%.0f ms"):format(ms)
  elseif ms < 60000 then
    return ("%.1f s"):format(ms / 1000)
  end
  local s = ms // 1000
  if s < 3600 then
    return ("%dm%02ds"):format(s // 60, s % 60)
  end
  return ("%dh%02dm"):format(s // 3600, s % 3600 // 60)
end

local function watermark_text(wm)
  if wm == nil then
    return "-"
  elseif wm == math.maxinteger then
    return "end"
  end
  return tostring(wm)
end

-- eddy info JOB: the job graph with parallelism and records per vertex,
-- and the checkpoint history; for a job that ended, as it was at its end.
function M.info(...)
  local args = { ... }
  if #args == 0 then
    return usage("'eddy info' needs a job (an id, a prefix of one, or a name)")
  elseif #args > 1 or args[1]:sub(1, 1) == "-" then
    return usage(#args > 1 and "'eddy info' takes one job" or "unknown option '%s' for 'eddy info'",
      args[1])
  end
  local j = find_job("info", args[1], true)
  local info, state = j.info, j.state
  if j.state == "RUNNING" then
    info = ask("info", j, { request = "info" }, 10)
    state = info.state
  end
  local now = info and info.now or j["end"]
  print(("job %s %q: %s"):format(j.id, j.name or "?", state or "?"))
  local when = { "started " .. (j.start and local_time(j.start) or "?") }
  if j["end"] then
    when[#when + 1] = "ended " .. local_time(j["end"])
  end
  if j.start and (j["end"] or now) then
    when[#when + 1] = ("after %s"):format(duration_text((j["end"] or now) - j.start))
  end
  when[#when + 1] = "pid " .. tostring(j.pid)
  print("  " .. table.concat(when, ", "))
  for _, f in ipairs { "error", "savepoint", "log", "savepoint_dir" } do
    if j[f] then
      print(("  %s: %s"):format(f:gsub("_", " "), j[f]))
    end
  end
  if not info then
    return 0
  end
  print()
  local rows = { { "#", "VERTEX", "UID", "PARALLELISM", "RECORDS IN", "RECORDS OUT", "WATERMARK" } }
  local inputs = {}
  for _, e in ipairs(info.edges or {}) do
    inputs[e.to] = inputs[e.to] or {}
    table.insert(inputs[e.to], ("%d %s"):format(e.from, e.partitioning))
  end
  for _, v in ipairs(info.vertices or {}) do
    local finished = (v.finished or 0) > 0
      and (" (%d/%d finished)"):format(v.finished, v.parallelism) or ""
    rows[#rows + 1] = { tostring(v.index), v.name, v.uid, tostring(v.parallelism) .. finished,
      tostring(v.records_in), tostring(v.records_out), watermark_text(v.watermark) }
  end
  print(table_text(rows, { true, false, false, true, true, true, true }))
  local edges = {}
  for _, v in ipairs(info.vertices or {}) do
    if inputs[v.index] then
      edges[#edges + 1] = ("%d <- %s"):format(v.index, table.concat(inputs[v.index], ", "))
    end
  end
  if #edges > 0 then
    print("inputs: " .. table.concat(edges, "; "))
  end
  -- keyed state figures, where the backend keeps them (RocksDB)
  rows = { { "#", "STATE", "ESTIMATED KEYS", "LIVE SST", "MEMTABLES", "BLOCK CACHE" } }
  for _, v in ipairs(info.vertices or {}) do
    local names = {}
    for name in pairs(v.state or {}) do
      names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
      local s = v.state[name]
      local function size(n) return n and human_size(n) or "-" end
      rows[#rows + 1] = { tostring(v.index), name, tostring(s.estimated_keys or "-"),
        size(s.live_sst_bytes), size(s.memtable_bytes), size(s.block_cache_bytes) }
    end
  end
  if #rows > 1 then
    print()
    print(table_text(rows, { true, false, true, true, true, true }))
  end
  print()
  local ck = info.checkpoints or {}
  local interval = info.checkpoint_interval or 0
  print(("checkpoints: %s; %d completed, %d failed, %d in progress"):format(
    interval > 0 and ("every " .. duration_text(interval)) or "off (savepoints only)",
    ck.completed or 0, ck.failed or 0, ck.in_progress or 0))
  if ck.history and #ck.history > 0 then
    rows = { { "ID", "KIND", "STATUS", "TRIGGERED", "DURATION", "SIZE", "ALIGNMENT", "PATH" } }
    for _, c in ipairs(ck.history) do
      rows[#rows + 1] = { tostring(c.id), c.kind, c.status, local_time(c.triggered),
        duration_text(c.duration_ms or 0), human_size(c.bytes or 0),
        duration_text(c.alignment_ms or 0), c.path or c.failure or "" }
    end
    print(table_text(rows, { true, false, false, false, true, true, true }, "  "))
  end
  return 0
end

-- eddy savepoint JOB [DIR]: a savepoint of a running job, its path on
-- stdout. eddy savepoint -d PATH: disposes of a savepoint (only of one).
function M.savepoint(...)
  local opts, rest = parse("savepoint", { ... }, { ["-d"] = "value", ["--dispose"] = "value" })
  if not opts then
    return usage("%s", rest)
  end
  local dispose = opts["-d"] or opts["--dispose"]
  if dispose then
    if #rest > 0 then
      return usage("'eddy savepoint -d PATH' takes only the path, got '%s'", rest[1])
    end
    local ok, err = core.savepoint_dispose((dispose:gsub("^file://", "")))
    if not ok then
      error("savepoint -d: " .. err, 0)
    end
    print("disposed of " .. dispose)
    return 0
  end
  if #rest == 0 then
    return usage("'eddy savepoint' needs a job (or -d PATH to dispose of a savepoint)")
  elseif #rest > 2 then
    return usage("'eddy savepoint' takes a job and a folder, got '%s' too", rest[3])
  end
  local j = find_job("savepoint", rest[1])
  local reply = ask("savepoint", j,
    { request = "savepoint", dir = rest[2] and folder_arg(rest[2]) or nil }, 300)
  print(reply.savepoint)
  return 0
end

-- eddy stop JOB [--savepoint-path DIR] [--drain]: a savepoint, then the
-- job ends (STOPPED); prints the savepoint's path once it has ended.
function M.stop(...)
  local opts, rest = parse("stop", { ... }, {
    ["--savepoint-path"] = "value", ["-p"] = "value", ["--drain"] = "flag", ["-d"] = "flag" })
  if not opts then
    return usage("%s", rest)
  end
  if #rest ~= 1 then
    return usage(#rest == 0 and "'eddy stop' needs a job" or "'eddy stop' takes one job")
  end
  local dir = opts["--savepoint-path"] or opts["-p"]
  local j = find_job("stop", rest[1])
  local reply = ask("stop", j, { request = "stop", savepoint_dir = dir and folder_arg(dir) or nil,
                                 drain = (opts["--drain"] or opts["-d"]) and true or false }, 300)
  print(reply.savepoint)
  return 0
end

-- eddy cancel JOB [-s DIR]: the job ends at once (CANCELED); with -s,
-- after a savepoint into DIR, whose path it prints.
function M.cancel(...)
  local opts, rest = parse("cancel", { ... }, {
    ["-s"] = "value", ["--with-savepoint"] = "value" })
  if not opts then
    return usage("%s", rest)
  end
  if #rest ~= 1 then
    return usage(#rest == 0 and "'eddy cancel' needs a job" or "'eddy cancel' takes one job")
  end
  local dir = opts["-s"] or opts["--with-savepoint"]
  local j = find_job("cancel", rest[1])
  local reply = ask("cancel", j,
    { request = "cancel", savepoint_dir = dir and folder_arg(dir) or nil }, dir and 300 or 30)
  if reply.savepoint then
    print(reply.savepoint)
  end
  return 0
end

return M
