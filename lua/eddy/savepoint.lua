-- Reading what a completed checkpoint or savepoint holds (Flink's State
-- Processor API, in the small): eddy.savepoint.load(path) and `eddy
-- inspect`. The C side (src/lua/snapshot_reader.c) opens the folder and
-- checks every file against _metadata; an operator's keyed state is
-- restored from all its subtasks' files into one in-memory keyed context
-- that owns every key group, the way a job restores it at parallelism 1,
-- so rows and timers come back as the harness shows them.
--
--   local snap = eddy.savepoint.load(path)    -- the folder or its _metadata
--   snap.id  snap.kind  snap.job  snap.name  snap.time  snap.path
--   snap.max_parallelism                      -- { [uid] = n }
--   snap:operators()        -> { {uid =, vertex =, parallelism =, max_parallelism =,
--                                 keyed =, states = {names}, subtasks = {...}} }
--   snap:states(uid)        -> { {name =, kind =} }  keyed states, then operator state
--   snap:entries(uid, name) -> iterator of key, namespace, value (, key group)
--   snap:state(uid [, name [, key [, namespace]]])   -- tables, as h:state() gives
--   snap:timers(uid)        -> { {kind =, key =, namespace =, ts =, key_group =} }
--
-- Operator state is what each subtask's operators returned from their
-- snapshot (a source's position, a sink's pending files...), in the
-- `<uid>-<subtask>.operators` file as a table by the operator's state uid.
-- Each of those uids is a state of kind "operator" whose entries are one
-- per subtask: the key is the subtask index (0-based), the value what the
-- operator stored.

local core = require "eddy.core"
local inspect = require "eddy.inspect"

local M = {}

local Snapshot = {}
Snapshot.__index = Snapshot

local function local_time(ms)
  return os.date("%Y-%m-%d %H:%M:%S", ms // 1000) .. (".%03d"):format(ms % 1000)
end
M.local_time = local_time

local function show(v)
  return inspect(v, { oneline = true })
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  return keys
end

-- Records in flight in a `.channels` file: each is a header (input int32,
-- timestamp int64, key group int32, key and value lengths uint32, in the
-- machine's byte order; runtime/checkpoint.c writes it) then the bytes.
-- Only counted; nil when the bytes do not read as that.
local function count_records(bytes)
  local n, at = 0, 1
  while at <= #bytes do
    if #bytes - at + 1 < 24 then
      return nil
    end
    local _, _, _, klen, vlen = string.unpack("=i4 i8 i4 I4 I4", bytes, at)
    at = at + 24 + klen + vlen
    n = n + 1
  end
  return at == #bytes + 1 and n or nil
end

-- Why the folder is no checkpoint, with a pointer to the ones it holds
-- when it is a checkpoint dir or a job folder.
local function not_checkpoint(path, msg)
  local ok, entries = pcall(core.checkpoints_list, path)
  if ok then
    local latest
    for _, e in ipairs(entries) do
      if e.state == "completed" and (not latest or e.time >= latest.time) then
        latest = e
      end
    end
    if latest then
      return ("%s; it holds %d checkpoint%s, the latest %s"):format(msg, #entries,
        #entries == 1 and "" or "s", latest.path)
    end
  end
  return msg
end

-- Opens the snapshot at path; who names the caller in messages, level is
-- where a bad argument is blamed.
local function open(path, who, level)
  if type(path) ~= "string" or path == "" then
    error(("%s: expected the path of a checkpoint or savepoint, got %s"):format(who,
      path == "" and "an empty string" or type(path)), level)
  end
  local file, msg, why, has_folders = core.snapshot_open(path)
  if not file then
    if why == "not_checkpoint" and has_folders then
      msg = not_checkpoint(path, msg)
    elseif why == "damaged" then
      msg = ("%s is damaged: %s"):format(path, msg)
    end
    error(("%s: %s"):format(who, msg), 0)
  end
  return M.from_file(file, who)
end

-- A Snapshot over a file object: a core SnapshotFile, or anything with the
-- same info(), keyed(maxp, names), read(name) and close().
function M.from_file(file, who)
  local info = file:info()
  local self = setmetatable({
    id = info.id, kind = info.kind, job = info.job, name = info.job_name,
    time = info.time, path = info.path, max_parallelism = {},
    _file = file, _folder = info.name, _who = who, _ops = {}, _uids = {},
    _keyed = {}, _opstate = {},
  }, Snapshot)
  for _, s in ipairs(info.subtasks) do
    local uid = s.uid or "?"
    local op = self._ops[uid]
    if not op then
      op = { uid = uid, vertex = s.vertex, parallelism = s.parallelism,
             max_parallelism = s.max_parallelism, subtasks = {},
             keyed_files = {}, operator_files = {}, channel_files = {} }
      self._ops[uid] = op
      self._uids[#self._uids + 1] = uid
      self.max_parallelism[uid] = s.max_parallelism
    end
    op.subtasks[#op.subtasks + 1] = { subtask = s.subtask, key_groups = s.key_groups,
                                      finished = s.finished or nil }
    for _, part in ipairs(s.parts) do
      local ext = part:match("%.(%w+)$")
      local list = ext == "keyed" and op.keyed_files or ext == "operators" and op.operator_files
                   or ext == "channels" and op.channel_files
      if list then
        list[#list + 1] = { subtask = s.subtask, file = part }
      end
    end
  end
  table.sort(self._uids)
  for _, op in pairs(self._ops) do
    table.sort(op.subtasks, function(a, b) return a.subtask < b.subtask end)
    for _, list in ipairs { op.keyed_files, op.operator_files, op.channel_files } do
      table.sort(list, function(a, b) return a.subtask < b.subtask end)
    end
  end
  return self
end

-- The value of (key, namespace) among rows {key =, namespace =, value =}
-- (as keyed:rows gives them), compared by canonical encoding; nil if none.
function M.value_in(rows, key, namespace)
  local want = core.encode(key)
  local want_ns = namespace ~= nil and core.encode(namespace) or nil
  for _, r in ipairs(rows) do
    local ns = r.namespace ~= nil and core.encode(r.namespace) or nil
    if ns == want_ns and core.encode(r.key) == want then
      return r.value
    end
  end
  return nil
end

-- ---- snapshots that are not on disk: the harness's h:snapshot() ----

-- The files of a snapshot held as strings, read as a SnapshotFile is.
local MemoryFile = {}
MemoryFile.__index = MemoryFile

function MemoryFile:info()
  return self._info
end

function MemoryFile:keyed(max_parallelism, names, state_backend)
  local list = {}
  for i, name in ipairs(names) do
    list[i] = self._files[name]
  end
  return core.keyed_from_snapshot(max_parallelism, list, state_backend)
end

function MemoryFile:read(name)
  local bytes = self._files[name]
  if bytes == nil then
    return nil, name .. ": no such file in the snapshot"
  end
  return bytes
end

function MemoryFile:close() end

-- The _metadata of a snapshot of one operator at parallelism 1, as a job
-- writes it: { subtasks = {...} }. parts: the file names it has.
local function one_operator_metadata(op)
  return {
    name = op.job_name,
    subtasks = { {
      vertex = op.vertex, uid = op.uid, subtask = 0, parallelism = 1,
      max_parallelism = op.max_parallelism, key_groups = { 0, op.max_parallelism - 1 },
      parts = op.parts,
    } },
  }
end

-- The files of one operator's snapshot (what a job's subtask 0 of 1 would
-- write): keyed, the bytes of core.keyed_snapshot; operators, its operator
-- states by state uid (nil for none). Returns { [file name] = bytes }, parts.
local function one_operator_files(op)
  local files, parts = {}, {}
  local function add(ext, bytes)
    local name = ("%s-0.%s"):format(op.uid, ext)
    files[name] = bytes
    parts[#parts + 1] = name
  end
  add("keyed", op.keyed)
  if op.operators ~= nil then
    add("operators", core.encode(op.operators))
  end
  return files, parts
end

-- A Snapshot in memory of one operator: op = { uid =, vertex =,
-- job_name =, max_parallelism =, keyed = bytes, operators = table or nil }.
function M.of_operator(op)
  local files, parts = one_operator_files(op)
  op.parts = parts
  local meta = one_operator_metadata(op)
  local file = setmetatable({ _files = files, _info = {
    path = "(in memory)", name = "snapshot", id = 1, job = op.job_id or "harness",
    kind = "snapshot", time = os.time() * 1000, job_name = meta.name,
    subtasks = meta.subtasks, files = {},
  } }, MemoryFile)
  return M.from_file(file, "eddy.Snapshot")
end

-- The same written as a savepoint in dir; returns its path.
function M.write_operator(dir, op)
  local files, parts = one_operator_files(op)
  op.parts = parts
  local list = {}
  for _, name in ipairs(parts) do
    list[#list + 1] = { name, files[name] }
  end
  return core.savepoint_write(dir, op.job_id, list, core.json(one_operator_metadata(op)))
end

-- eddy.savepoint.load(path) -> Snapshot
function M.load(path)
  local snap = open(path, "eddy.savepoint.load", 3)
  return snap
end

-- For `eddy inspect`: messages start with "inspect:".
function M.open(path, who)
  local snap = open(path, who, 3)
  return snap
end

-- Raised for a problem in the files (the checksums matched, so the
-- writer wrote something eddy cannot read back).
function Snapshot:_damaged(msg)
  error(("%s: %s is damaged: %s"):format(self._who, self.path, msg), 0)
end

function Snapshot:_op(uid, method)
  if self._file == nil then
    error(("snap:%s: the snapshot is closed"):format(method), 3)
  end
  local op = self._ops[uid]
  if not op then
    error(("snap:%s: no operator %s in %s (its operators: %s)"):format(method, show(uid),
      self._folder, #self._uids > 0 and table.concat(self._uids, ", ") or "none"), 3)
  end
  return op
end

-- The operator's keyed context (an eddy.Keyed), restored once; nil when
-- the operator has no keyed state.
function Snapshot:_keyed_of(op)
  if #op.keyed_files == 0 then
    return nil
  end
  local k = self._keyed[op.uid]
  if not k then
    local names = {}
    for i, f in ipairs(op.keyed_files) do
      names[i] = f.file
    end
    local err
    k, err = self._file:keyed(op.max_parallelism, names)
    if not k then
      self:_damaged(err)
    end
    self._keyed[op.uid] = k
  end
  return k
end

-- A new eddy.Keyed with the operator's keyed state, the caller's to own
-- (the harness restores from it), on the backend state_backend names.
function Snapshot:_fresh_keyed(op, state_backend)
  local names = {}
  for i, f in ipairs(op.keyed_files) do
    names[i] = f.file
  end
  local k, err = self._file:keyed(op.max_parallelism, names, state_backend)
  if not k then
    error(("%s: %s"):format(self.path, err), 0)
  end
  return k
end

-- { [state uid] = { {subtask =, value =}, ... } } from the operator's
-- `.operators` files, read once.
function Snapshot:_opstate_of(op)
  local st = self._opstate[op.uid]
  if st then
    return st
  end
  st = {}
  for _, f in ipairs(op.operator_files) do
    local bytes, err = self._file:read(f.file)
    if not bytes then
      self:_damaged(err)
    end
    local ok, value = pcall(core.decode, bytes)
    if not ok or type(value) ~= "table" then
      self:_damaged(("%s/%s: %s"):format(self._folder, f.file,
        ok and "expected a table of operator states" or tostring(value)))
    end
    for name, v in pairs(value) do
      local list = st[name]
      if not list then
        list = {}
        st[name] = list
      end
      list[#list + 1] = { subtask = f.subtask, value = v }
    end
  end
  self._opstate[op.uid] = st
  return st
end

local function states_of(self, op)
  local out = {}
  local k = self:_keyed_of(op)
  if k then
    for _, s in ipairs(k:states()) do
      out[#out + 1] = { name = s.name, kind = s.kind }
    end
    table.sort(out, function(a, b) return a.name < b.name end)
  end
  -- operator states are named by the uid of the operator that keeps them,
  -- which may also be a keyed state's name: both are listed, told apart by
  -- their kind
  for _, name in ipairs(sorted_keys(self:_opstate_of(op))) do
    if type(name) == "string" then
      out[#out + 1] = { name = name, kind = "operator" }
    end
  end
  return out
end

-- snap:operators() -> every operator (vertex) of the snapshot, by uid.
function Snapshot:operators()
  local out = {}
  for _, uid in ipairs(self._uids) do
    local op = self:_op(uid, "operators")
    local names = {}
    for i, s in ipairs(states_of(self, op)) do
      names[i] = s.name
    end
    local subtasks = {}
    for i, s in ipairs(op.subtasks) do
      subtasks[i] = { subtask = s.subtask, finished = s.finished,
                      key_groups = s.key_groups and { s.key_groups[1], s.key_groups[2] } }
    end
    local entry = { uid = uid, vertex = op.vertex, parallelism = op.parallelism,
                    max_parallelism = op.max_parallelism, keyed = #op.keyed_files > 0,
                    states = names, subtasks = subtasks }
    if #op.channel_files > 0 then
      local n = 0
      for _, f in ipairs(op.channel_files) do
        local bytes = self._file:read(f.file)
        local c = bytes and count_records(bytes)
        n = n and c and n + c or nil
      end
      entry.in_flight = n
    end
    out[#out + 1] = entry
  end
  return out
end

-- snap:states(uid) -> { {name =, kind =} }: keyed states by name, then the
-- operator states by name.
function Snapshot:states(uid)
  return states_of(self, self:_op(uid, "states"))
end

-- The rows of a state: { {key =, namespace =, key_group =, value =} } for
-- keyed state (by key group, key, namespace), { {key = subtask, value =} }
-- for operator state.
local function rows_of(self, uid, name, method, kind)
  local op = self:_op(uid, method)
  if type(name) ~= "string" then
    error(("snap:%s: expected a state name, got %s"):format(method, type(name)), 3)
  end
  local k = kind ~= "operator" and self:_keyed_of(op)
  if k then
    for _, s in ipairs(k:states()) do
      if s.name == name then
        return k:rows(name), s.kind
      end
    end
  end
  local list = self:_opstate_of(op)[name]
  if list then
    local rows = {}
    for i, e in ipairs(list) do
      rows[i] = { key = e.subtask, value = e.value }
    end
    return rows, "operator"
  end
  local names = {}
  for i, s in ipairs(states_of(self, op)) do
    names[i] = s.name
  end
  error(("snap:%s: operator %s has no state %s (its states: %s)"):format(method, show(uid), show(name),
    #names > 0 and table.concat(names, ", ") or "none"), 3)
end

-- snap:entries(uid, name [, kind]) -> an iterator of key, namespace, value
-- (and, for keyed state, the key group): for key, ns, v in snap:entries(...)
-- do. kind "operator" picks the operator state when a keyed state has the
-- same name (keyed state is taken first otherwise).
function Snapshot:entries(uid, name, kind)
  local rows = rows_of(self, uid, name, "entries", kind)
  local i = 0
  return function()
    i = i + 1
    local r = rows[i]
    if r then
      return r.key, r.namespace, r.value, r.key_group
    end
  end
end

-- snap:state(uid) -> { [name] = rows }; snap:state(uid, name) -> rows;
-- snap:state(uid, name, key [, namespace]) -> that key's value, as the
-- harness's h:state() gives them.
function Snapshot:state(uid, name, key, namespace)
  if name == nil then
    local op = self:_op(uid, "state")
    local all = {}
    for _, s in ipairs(states_of(self, op)) do
      all[s.name] = (rows_of(self, uid, s.name, "state"))
    end
    return all
  end
  local rows = rows_of(self, uid, name, "state")
  if key == nil then
    return rows
  end
  return M.value_in(rows, key, namespace)
end

-- snap:timers(uid) -> pending timers, event time first, each kind in
-- firing order: { {kind =, key =, namespace =, ts =, key_group =} }
function Snapshot:timers(uid)
  local k = self:_keyed_of(self:_op(uid, "timers"))
  return k and k:timers() or {}
end

-- Frees the files and the restored state at once (the garbage collector
-- does it otherwise).
function Snapshot:close()
  if self._file then
    self._file:close()
    self._file = nil
  end
  for _, k in pairs(self._keyed) do
    k:close()
  end
  self._keyed, self._opstate = {}, {}
end

-- Rows of text cells as aligned columns; the last column is not padded.
local function columns(rows, indent)
  local widths = {}
  for _, r in ipairs(rows) do
    for i = 1, #r - 1 do
      widths[i] = math.max(widths[i] or 0, utf8.len(r[i]) or #r[i])
    end
  end
  local lines = {}
  for _, r in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(r) do
      if i < #r then
        cell = cell .. (" "):rep(widths[i] - (utf8.len(cell) or #cell))
      end
      cells[i] = cell
    end
    lines[#lines + 1] = ((indent or "") .. table.concat(cells, "  ")):gsub("%s+$", "")
  end
  return table.concat(lines, "\n")
end
M.columns = columns

-- The summary: what the snapshot is, then a line per operator and state
-- with its number of entries. only (optional) restricts it to one uid.
function Snapshot:summary(only)
  local head = ("%s %d of %s (job %s)\n  taken %s\n  in %s"):format(self.kind, self.id,
    self.name and ("%q"):format(self.name) or "a job", self.job, local_time(self.time), self.path)
  local rows = { { "OPERATOR", "VERTEX", "PARALLELISM", "STATE", "KIND", "ENTRIES" } }
  for _, op in ipairs(self:operators()) do
    if only == nil or op.uid == only then
      local lead = { op.uid, op.vertex or "-", ("%d/%d"):format(op.parallelism, op.max_parallelism) }
      local function row(state, kind, n)
        rows[#rows + 1] = { lead[1], lead[2], lead[3], state, kind, tostring(n) }
        lead = { "", "", "" }
      end
      for _, s in ipairs(self:states(op.uid)) do
        row(s.name, s.kind, #rows_of(self, op.uid, s.name, "summary", s.kind))
      end
      if op.keyed then
        row("(timers)", "", #self:timers(op.uid))
      end
      if op.in_flight then
        row("(in flight)", "", op.in_flight)
      end
      if lead[1] ~= "" then
        rows[#rows + 1] = { lead[1], lead[2], lead[3], "-", "", "" }
      end
    end
  end
  return head .. "\n" .. columns(rows)
end

function Snapshot:__tostring()
  if self._file == nil then
    return ("eddy.Snapshot (closed): %s %d in %s"):format(self.kind, self.id, self.path)
  end
  return self:summary()
end

Snapshot.__close = Snapshot.close
Snapshot.__name = "eddy.Snapshot"

return M
