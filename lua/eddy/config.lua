-- eddy.config: every configuration a user can write, checked in one place.
--
-- Job scripts, harnesses, TTL policies and the option tables of sources and
-- sinks all reach the engine through here, so that a mistake is reported
-- before any thread or file exists, in the user's words and at the user's
-- line: `job.lua:3: eddy.job: checkpoint.interval: expected a duration like
-- "5s", got "fast"`. The module also reads Flink's configuration names (the
-- keys of flink-conf.yaml, in a job's `flink` table or as `eddy run -D`), so
-- that a workshop can carry a Flink setup over one key at a time.
--
-- Failures are raised deep inside as tagged tables and turned into a plain
-- string only at the public entry points, which know the caller's `level`:
-- the message then points at the user's call and never at this file, however
-- deep the validator that found the problem.
--
-- The small validator kit (M.enum, M.integer, ..., M.table_of) is public so
-- that other modules check their own option tables the same way, through
-- M.check_options.

local M = {}

---------------------------------------------------------------------------
-- Failures and messages

local Failure = { __tostring = function(self) return self.message end }

local function fail(fmt, ...)
  error(setmetatable({ message = fmt:format(...) }, Failure))
end

-- Calls fn(...); a validation failure is re-raised as a string whose
-- position is `level` counted as if error() had been called in the public
-- function that called protect (1 = that function, 2 = its caller, 0 = no
-- position). Public functions must not tail-call protect, or their frame,
-- which the level counts, would be gone.
local function protect(level, fn, ...)
  local ok, result = pcall(fn, ...)
  if ok then return result end
  if getmetatable(result) ~= Failure then error(result, 0) end
  level = level or 2
  error(result.message, level > 0 and level + 1 or 0)
end

-- A value as the user wrote it: strings quoted, tables and functions by kind.
local function show(v)
  local kind = type(v)
  if kind == "string" then return ("%q"):format(v) end
  if kind == "number" or kind == "boolean" or kind == "nil" then return tostring(v) end
  return "a " .. kind
end

-- "eddy.job" + "checkpoint" -> "eddy.job: checkpoint", and
-- "eddy.job: checkpoint" + "interval" -> "eddy.job: checkpoint.interval".
local function field_where(where, key)
  return where .. (where:find(": ", 1, true) and "." or ": ") .. key
end

local function join(path, key)
  return path and path .. "." .. key or key
end

-- Errors must not depend on the order of pairs(), which varies from run to
-- run, so tables are always walked in a fixed key order.
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "string" or ta == "number" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

---------------------------------------------------------------------------
-- Suggestions

-- Optimal string alignment distance: Levenshtein plus the transposition of
-- two adjacent characters, the commonest typo ("paralelism", "intreval").
local function distance(a, b)
  local before, previous = {}, {}
  for j = 0, #b do previous[j] = j end
  for i = 1, #a do
    local current = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local d = math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        d = math.min(d, before[j - 2] + 1)
      end
      current[j] = d
    end
    before, previous = previous, current
  end
  return previous[#b]
end

-- The candidate closest to word, if close enough to be what was meant: at
-- most max(1, #word // 3) edits away; failing that, the one candidate word
-- is the start of (a truncation such as "rocks" for "rocksdb"). Ties go to
-- the alphabetically first candidate, so the same mistake always gets the
-- same suggestion.
function M.suggest(word, candidates)
  if type(word) ~= "string" then return nil end
  local sorted = table.move(candidates, 1, #candidates, 1, {})
  table.sort(sorted)
  local limit = math.max(1, #word // 3)
  local best, best_distance, extended = nil, math.huge, {}
  for _, candidate in ipairs(sorted) do
    local d = distance(word, candidate)
    if d <= limit and d < best_distance then best, best_distance = candidate, d end
    if #word >= 3 and candidate:sub(1, #word) == word then extended[#extended + 1] = candidate end
  end
  if not best and #extended == 1 then return extended[1] end
  return best
end

local function unknown_key(where, key, candidates)
  if type(key) ~= "string" then fail("%s: unknown key [%s]", where, tostring(key)) end
  local hint = M.suggest(key, candidates)
  fail("%s: unknown key '%s'%s", where, key, hint and (" (did you mean '%s'?)"):format(hint) or "")
end

---------------------------------------------------------------------------
-- Durations and sizes

local SECOND, MINUTE, HOUR, DAY = 1000, 60 * 1000, 3600 * 1000, 86400 * 1000

-- eddy's short units plus every spelling Flink's TimeUtils accepts down to
-- milliseconds; a bare number is milliseconds, as in Flink.
local DURATION_UNITS = {
  [""] = 1, ms = 1, milli = 1, millis = 1, millisecond = 1, milliseconds = 1,
  s = SECOND, sec = SECOND, secs = SECOND, second = SECOND, seconds = SECOND,
  m = MINUTE, min = MINUTE, mins = MINUTE, minute = MINUTE, minutes = MINUTE,
  h = HOUR, hour = HOUR, hours = HOUR,
  d = DAY, day = DAY, days = DAY,
}

-- Binary multiples, as Flink's MemorySize reads them ("64 mb", "256m").
local KIB, MIB, GIB, TIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
local SIZE_UNITS = {
  [""] = 1, b = 1, byte = 1, bytes = 1,
  k = KIB, kb = KIB, kib = KIB, kibibytes = KIB,
  m = MIB, mb = MIB, mib = MIB, mebibytes = MIB,
  g = GIB, gb = GIB, gib = GIB, gibibytes = GIB,
  t = TIB, tb = TIB, tib = TIB, tebibytes = TIB,
}

-- "1.5" with a unit -> an exact integer count of base units. The arithmetic
-- is done on the digits, because 1.1 * 1000 is not 1100 in floating point.
-- Returns nil, true when the only problem is a fraction of a base unit.
local function scale(text, units)
  local whole, fraction, unit = text:match("^%s*(%d*)%.?(%d*)%s*(%a*)%s*$")
  local factor = whole and units[unit:lower()]
  if not factor or (whole == "" and fraction == "") or #fraction > 6 then return nil end
  local count = tonumber(whole == "" and "0" or whole)
  if math.type(count) ~= "integer" or count >= math.maxinteger // factor then return nil end
  local part = tonumber(fraction == "" and "0" or fraction) * factor
  local divisor = math.tointeger(10 ^ #fraction)
  if part % divisor ~= 0 then return nil, true end
  return count * factor + part // divisor
end

local function measure(v, units)
  if type(v) == "string" then return scale(v, units) end
  if type(v) ~= "number" then return nil end
  local n = math.tointeger(v)
  if n then return n end
  return nil, v % 1 > 0 -- false for NaN and infinities, whose % 1 is NaN
end

local function quantity(v, where, units, like, base)
  local n, fractional = measure(v, units)
  if not n or n < 0 then
    fail("%s: expected %s, got %s%s", where, like, show(v),
      fractional and (" (not a whole number of %s)"):format(base) or "")
  end
  return n
end

local function parse_duration(v, where)
  return quantity(v, where, DURATION_UNITS, 'a duration like "5s"', "milliseconds")
end

local function parse_size(v, where)
  return quantity(v, where, SIZE_UNITS, 'a size like "64MB"', "bytes")
end

---------------------------------------------------------------------------
-- The validator kit
--
-- A validator is { check = function(value, where, textual) -> normalised,
-- default, required, fields }. check raises a failure object on a bad value
-- (tostring gives the message; check_options turns it into an error string
-- at the caller's level), so a custom validator may call other validators'
-- check and let their failures through. `textual` is set for values from
-- Flink configuration or -D, which may be strings such as "true" or "4"
-- where a boolean or a number is meant. `fields` is the schema of a table
-- validator. Every constructor takes `default` and `required`.

local Validator = {}
Validator.__index = Validator

local function validator(opts, check, fields)
  opts = opts or {}
  return setmetatable({
    check = check, default = opts.default, required = opts.required, fields = fields,
  }, Validator)
end

-- The value of a key the user left out.
function Validator:absent(where)
  if self.required then return self.check(nil, where) end -- fails: "got nil"
  if self.fields then return self.check({}, where) end
  return self.default
end

-- One of a few strings, matched without regard to case. `map` translates an
-- accepted spelling into the value returned (Flink's "hashmap" -> "heap").
function M.enum(opts)
  local listed, by_lower, lowered = {}, {}, {}
  for i, name in ipairs(opts) do
    listed[i] = ("%q"):format(name)
    by_lower[name:lower()] = name
    lowered[i] = name:lower()
  end
  local list = table.concat(listed, ", ")
  return validator(opts, function(v, where)
    local name = type(v) == "string" and by_lower[v:lower()]
    if name then
      if opts.map and opts.map[name] ~= nil then return opts.map[name] end
      return name
    end
    local hint = type(v) == "string" and M.suggest(v:lower(), lowered)
    fail("%s: expected one of %s, got %s%s", where, list, show(v),
      hint and (' (did you mean "%s"?)'):format(by_lower[hint]) or "")
  end)
end

local function bounds_text(noun, o)
  if o.min and o.max then return ("%s from %s to %s"):format(noun, o.min, o.max) end
  local parts = {}
  if o.min then parts[#parts + 1] = ">= " .. o.min end
  if o.above then parts[#parts + 1] = "> " .. o.above end
  if o.max then parts[#parts + 1] = "<= " .. o.max end
  if o.below then parts[#parts + 1] = "< " .. o.below end
  return #parts == 0 and noun or noun .. " " .. table.concat(parts, " and ")
end

local function in_bounds(n, o)
  return not ((o.min and n < o.min) or (o.max and n > o.max)
    or (o.above and n <= o.above) or (o.below and n >= o.below))
end

local function as_number(v, textual)
  if textual and type(v) == "string" then v = tonumber(v) end
  if type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge then return v end
end

-- Bounds: min and max inclusive, above and below exclusive.
function M.integer(opts)
  opts = opts or {}
  local what = bounds_text("an integer", opts)
  return validator(opts, function(v, where, textual)
    local n = as_number(v, textual)
    n = n and math.tointeger(n)
    if not n or not in_bounds(n, opts) then fail("%s: expected %s, got %s", where, what, show(v)) end
    return n
  end)
end

function M.number(opts)
  opts = opts or {}
  local what = bounds_text("a number", opts)
  return validator(opts, function(v, where, textual)
    local n = as_number(v, textual)
    if not n or not in_bounds(n, opts) then fail("%s: expected %s, got %s", where, what, show(v)) end
    return n
  end)
end

local WORDS = { ["true"] = true, ["false"] = false }

function M.boolean(opts)
  return validator(opts, function(v, where, textual)
    if textual and type(v) == "string" and WORDS[v:lower()] ~= nil then return WORDS[v:lower()] end
    if type(v) ~= "boolean" then fail("%s: expected a boolean, got %s", where, show(v)) end
    return v
  end)
end

-- Any value whose type() is listed, returned as it is.
function M.one_of_types(opts)
  local accepted, words = {}, {}
  for i, kind in ipairs(opts) do
    accepted[kind] = true
    words[i] = "a " .. kind
  end
  local what = #words > 1 and table.concat(words, ", ", 1, #words - 1) .. " or " .. words[#words]
    or words[1]
  return validator(opts, function(v, where)
    if not accepted[type(v)] then fail("%s: expected %s, got %s", where, what, show(v)) end
    return v
  end)
end

local function of_type(kind, opts)
  opts = opts or {}
  return M.one_of_types { kind, default = opts.default, required = opts.required }
end

function M.string(opts) return of_type("string", opts) end
function M.fn(opts) return of_type("function", opts) end

-- Durations and sizes take `min`, and a default written the user's way
-- ("10m"), normalised once here.
local function measured(parse, least)
  return function(opts)
    opts = opts or {}
    local min, default = opts.min, opts.default
    if default ~= nil then default = parse(default, "default") end
    return validator({ default = default, required = opts.required }, function(v, where)
      local n = parse(v, where)
      if min and n < min then fail("%s: expected %s, got %s", where, least(min), show(v)) end
      return n
    end)
  end
end

local duration_validator = measured(parse_duration, function(min)
  return ("a duration of at least %dms"):format(min)
end)
local size_validator = measured(parse_size, function(min)
  return ("a size of at least %d byte%s"):format(min, min == 1 and "" or "s")
end)

-- Two roles under one name, as the API promises both: called with a value
-- and a place, parse it; called with nothing or an options table, build a
-- validator. A value is never a table, so a table means options.
local function measure_api(parse, build, noun)
  return function(v, where, level)
    if where == nil and (v == nil or type(v) == "table") then return build(v) end
    local n = protect(level, parse, v, where or noun)
    return n
  end
end

-- M.duration(v, where [, level]) -> integer milliseconds, or M.duration{min=, default=}.
M.duration = measure_api(parse_duration, duration_validator, "duration")
-- M.size(v, where [, level]) -> integer bytes, or M.size{min=, default=}.
M.size = measure_api(parse_size, size_validator, "size")

-- Calls visit(key, field, value) for each key of t in a fixed order,
-- refusing a value that is not a table and keys the schema does not know.
local function each_field(fields, t, where, visit)
  if type(t) ~= "table" then fail("%s: expected a table, got %s", where, show(t)) end
  for _, key in ipairs(sorted_keys(t)) do
    local field = type(key) == "string" and fields[key]
    if not field then unknown_key(where, key, sorted_keys(fields)) end
    visit(key, field, t[key])
  end
end

-- A table with known keys: a new table of normalised values and defaults.
function M.table_of(schema, opts)
  return validator(opts, function(t, where, textual)
    local out = {}
    each_field(schema, t, where, function(key, field, value)
      out[key] = field.check(value, field_where(where, key), textual)
    end)
    for _, key in ipairs(sorted_keys(schema)) do
      if out[key] == nil then out[key] = schema[key]:absent(field_where(where, key)) end
    end
    return out
  end, schema)
end

-- Validates an option table (nil means all defaults) against a schema, a
-- map of key -> validator or an M.table_of, and returns a normalised copy.
-- `where` names the call in messages: check_options(o, s, "from_file").
function M.check_options(tbl, schema, where, level)
  local spec = getmetatable(schema) == Validator and schema or M.table_of(schema)
  local out = protect(level, spec.check, tbl == nil and {} or tbl, where or "options")
  return out
end

---------------------------------------------------------------------------
-- The job schema (API.md, "Job configuration")

-- A local folder: a path, or a file:// URI as Flink's localdir takes it.
local LOCAL_DIR = validator(nil, function(v, where)
  local path = type(v) == "string" and v:gsub("^file://", "") or nil
  if not path or path == "" then fail("%s: expected a folder path, got %s", where, show(v)) end
  return path
end)

local STATE_BACKEND = M.table_of {
  type = M.enum { "heap", "rocksdb", default = "heap" },
  -- RocksDB's working folders go in here (default: $TMPDIR/eddy-rocksdb)
  dir = LOCAL_DIR,
  incremental = M.boolean { default = false }, -- Flink's default
  -- where a RocksDB backend keeps timers (Flink's timer-service.factory):
  -- in RocksDB column families, Flink's default, or in memory beside it.
  -- The heap backend keeps them in memory whatever this says, as Flink's.
  timers = M.enum { "heap", "rocksdb", default = "rocksdb" },
  predefined = M.enum {
    "default", "spinning_disk_optimized", "spinning_disk_optimized_high_mem",
    "flash_ssd_optimized", default = "default",
  },
  -- No defaults: an option left out keeps the value of the predefined
  -- profile, as in Flink, so the backend must be able to tell it was unset.
  options = M.table_of {
    write_buffer_size = M.size { min = 1 },
    max_write_buffer_number = M.integer { min = 1 },
    target_file_size_base = M.size { min = 1 },
    block_size = M.size { min = 1 },
    block_cache_size = M.size(),
    bloom_filter_bits = M.number { min = 0 }, -- 0: no bloom filter
    max_background_jobs = M.integer { min = 1 },
    compression = M.enum { "zstd", "lz4", "snappy", "none" },
  },
  memory = M.table_of {
    managed = M.boolean { default = true },
    fixed_per_slot = M.size { min = 1 },
    write_buffer_ratio = M.number { above = 0, below = 1, default = 0.5 },
    high_prio_pool_ratio = M.number { min = 0, below = 1, default = 0.1 },
  },
}

-- Flink refuses intervals and timeouts under 10 ms
-- (CheckpointConfig.MINIMAL_CHECKPOINT_TIME).
local MINIMAL_CHECKPOINT_TIME = 10

-- Flink keeps these counts in Java ints; so does the engine.
local INT32_MAX = 2147483647

local CHECKPOINT = M.table_of {
  interval = M.duration { min = MINIMAL_CHECKPOINT_TIME }, -- nil: checkpointing off
  mode = M.enum { "exactly_once", "at_least_once", default = "exactly_once" },
  timeout = M.duration { min = MINIMAL_CHECKPOINT_TIME, default = "10m" },
  min_pause = M.duration { default = 0 },
  max_concurrent = M.integer { min = 1, max = INT32_MAX, default = 1 },
  dir = M.string(),
  retained = M.integer { min = 1, max = INT32_MAX, default = 1 },
  -- Flink's default is NO_EXTERNALIZED_CHECKPOINTS (SEMANTICS.md §7): the
  -- checkpoints of a job that ends in any way are deleted.
  externalized = M.enum {
    "none", "retain_on_cancellation", "delete_on_cancellation", default = "none",
  },
  unaligned = M.boolean { default = false },
  aligned_timeout = M.duration { default = 0 },
  tolerable_failures = M.integer { min = 0, max = INT32_MAX, default = 0 },
  compression = M.enum { "zstd", "none", default = "zstd" },
  zstd_level = M.integer { min = 1, max = 19, default = 1 },
}

-- Each strategy's keys with Flink's defaults (RestartStrategyOptions).
local RESTART_KEYS = {
  none = {},
  fixed_delay = {
    attempts = M.integer { min = 0, max = INT32_MAX, default = 1 },
    delay = M.duration { default = "1s" },
  },
  exponential_delay = {
    initial = M.duration { min = 1, default = "1s" },
    max = M.duration { min = 1, default = "1m" },
    multiplier = M.number { min = 1, default = 1.5 },
  },
  failure_rate = {
    max_failures = M.integer { min = 1, max = INT32_MAX, default = 1 },
    interval = M.duration { min = 1, default = "1m" },
    delay = M.duration { default = "1s" },
  },
}

-- eddy's choice 8: with checkpointing on and no strategy given, a few
-- quick retries rather than Flink's endless ones, which look like a hang at
-- a REPL; without checkpointing, no restart.
local IMPLICIT_RESTART = { fixed_delay = { attempts = 3, delay = SECOND }, none = {} }

-- The restart table accepts the keys of every strategy; which ones are
-- allowed is decided once the strategy is known (resolve_restart).
local RESTART = (function()
  local fields = { strategy = M.enum { "none", "fixed_delay", "exponential_delay", "failure_rate" } }
  for _, keys in pairs(RESTART_KEYS) do
    for key, spec in pairs(keys) do fields[key] = spec end
  end
  return M.table_of(fields)
end)()

local JOB = M.table_of {
  name = M.string { default = "job" },
  parallelism = M.integer { min = 1, max = 32768, default = 1 },
  -- nil: the caller applies Flink's formula from the parallelism. 32768 is
  -- Flink's upper bound, 2^15 key groups.
  max_parallelism = M.integer { min = 1, max = 32768 },
  executor = M.enum { "threads", "inline" }, -- nil: the caller decides
  state_backend = STATE_BACKEND,
  checkpoint = CHECKPOINT,
  savepoint_dir = M.string(),
  restart = RESTART,
  processing_time = M.enum { "system", "manual", default = "system" },
  -- nil: a watermark after every record (SEMANTICS.md, eddy's choice 4).
  watermark_interval = M.duration { min = 1 },
  trace = M.boolean { default = false },
  -- a control socket and status file while it runs (eddy list/info/stop...)
  control = M.boolean { default = true },
  restore = M.string(),
  allow_non_restored_state = M.boolean { default = false },
  flink = M.one_of_types { "table" },
}

-- Every leaf of the job schema by its dotted path ("checkpoint.interval"):
-- these are the eddy names -D and `flink` accept besides Flink's.
local LEAVES = {}
do
  local function collect(fields, path)
    for key, spec in pairs(fields) do
      if spec.fields then collect(spec.fields, join(path, key)) else LEAVES[join(path, key)] = spec end
    end
  end
  collect(JOB.fields)
  LEAVES.flink = nil
end

---------------------------------------------------------------------------
-- Flink's names

-- Flink spells enum values its own way: accept its spellings, return eddy's.
local function flink_enum(spellings)
  local names = { map = {} }
  for i, pair in ipairs(spellings) do
    names[i] = pair[1]
    names.map[pair[1]] = pair[2]
  end
  return M.enum(names)
end

local BACKEND_NAMES = flink_enum {
  { "hashmap", "heap" }, { "rocksdb", "rocksdb" },
  { "jobmanager", "heap" }, { "filesystem", "heap" }, { "memory", "heap" },
}

local STORAGE_NAMES = M.enum { "filesystem", "jobmanager" }
local CHECKPOINT_STORAGE = validator(nil, function(v, where, textual)
  if STORAGE_NAMES.check(v, where, textual) == "jobmanager" then
    fail('%s: eddy always writes checkpoints to files; use "filesystem"', where)
  end
end)

-- Flink's bloom filter takes two keys, bits-per-key only counting when
-- use-bloom-filter is true; they are kept apart under paths no eddy name
-- can reach and combined into bloom_filter_bits by resolve_bloom.
local USE_BLOOM = "state_backend.options.use-bloom-filter"
local BLOOM_BITS = "state_backend.options.bits-per-key"
local DEFAULT_BLOOM_BITS = 10

local FLINK_BOOLEAN = M.boolean()

-- Flink's compression.per.level is a list, one type per level; eddy
-- compresses every level alike, so the list must name one type.
local COMPRESSION_NAMES = flink_enum {
  { "ZSTD_COMPRESSION", "zstd" }, { "LZ4_COMPRESSION", "lz4" },
  { "SNAPPY_COMPRESSION", "snappy" }, { "NO_COMPRESSION", "none" },
}
local COMPRESSION_PER_LEVEL = validator(nil, function(v, where, textual)
  local chosen
  for name in tostring(v):gmatch("[^;,%s]+") do
    local c = COMPRESSION_NAMES.check(name, where, textual)
    if chosen and c ~= chosen then
      fail("%s: eddy compresses every level alike: give one compression type, got %s", where, show(v))
    end
    chosen = c
  end
  if not chosen then COMPRESSION_NAMES.check(v, where, textual) end
  return chosen
end)

local RESTART_NAMES = flink_enum {
  { "none", "none" }, { "off", "none" }, { "disable", "none" },
  { "fixed-delay", "fixed_delay" }, { "fixeddelay", "fixed_delay" },
  { "exponential-delay", "exponential_delay" }, { "exponentialdelay", "exponential_delay" },
  { "failure-rate", "failure_rate" }, { "failurerate", "failure_rate" },
}

-- Flink's restart keys name their strategy, and Flink ignores those of a
-- strategy not chosen, so they are kept per strategy until one is.
local function restart_key(strategy, key)
  return { path = ("restart.%s.%s"):format(strategy, key), spec = RESTART_KEYS[strategy][key] }
end

-- Flink key -> eddy path (a string), or { path =, spec = } when Flink's
-- values are spelled differently or the key is combined with others. Both
-- the current names and the older ones still found in flink-conf.yaml files.
local FLINK = {
  ["pipeline.name"] = "name",
  ["parallelism.default"] = "parallelism",
  ["pipeline.max-parallelism"] = "max_parallelism",
  ["pipeline.auto-watermark-interval"] = "watermark_interval",

  ["state.backend.type"] = { path = "state_backend.type", spec = BACKEND_NAMES },
  ["state.backend"] = { path = "state_backend.type", spec = BACKEND_NAMES },
  ["state.backend.incremental"] = "state_backend.incremental",
  ["execution.checkpointing.incremental"] = "state_backend.incremental",
  ["state.backend.rocksdb.localdir"] = "state_backend.dir",
  ["state.backend.rocksdb.timer-service.factory"] = {
    path = "state_backend.timers",
    spec = flink_enum { { "HEAP", "heap" }, { "ROCKSDB", "rocksdb" } },
  },
  ["state.backend.rocksdb.predefined-options"] = {
    path = "state_backend.predefined",
    spec = flink_enum {
      { "DEFAULT", "default" }, { "SPINNING_DISK_OPTIMIZED", "spinning_disk_optimized" },
      { "SPINNING_DISK_OPTIMIZED_HIGH_MEM", "spinning_disk_optimized_high_mem" },
      { "FLASH_SSD_OPTIMIZED", "flash_ssd_optimized" },
    },
  },
  ["state.backend.rocksdb.writebuffer.size"] = "state_backend.options.write_buffer_size",
  ["state.backend.rocksdb.writebuffer.count"] = "state_backend.options.max_write_buffer_number",
  ["state.backend.rocksdb.compaction.level.target-file-size-base"] =
    "state_backend.options.target_file_size_base",
  ["state.backend.rocksdb.block.blocksize"] = "state_backend.options.block_size",
  ["state.backend.rocksdb.block.cache-size"] = "state_backend.options.block_cache_size",
  ["state.backend.rocksdb.use-bloom-filter"] = { path = USE_BLOOM, spec = FLINK_BOOLEAN },
  ["state.backend.rocksdb.bloom-filter.bits-per-key"] = {
    path = BLOOM_BITS, spec = M.number { min = 0 },
  },
  ["state.backend.rocksdb.thread.num"] = "state_backend.options.max_background_jobs",
  ["state.backend.rocksdb.compression.per.level"] = {
    path = "state_backend.options.compression", spec = COMPRESSION_PER_LEVEL,
  },
  ["state.backend.rocksdb.memory.managed"] = "state_backend.memory.managed",
  ["state.backend.rocksdb.memory.fixed-per-slot"] = "state_backend.memory.fixed_per_slot",
  ["state.backend.rocksdb.memory.write-buffer-ratio"] = "state_backend.memory.write_buffer_ratio",
  ["state.backend.rocksdb.memory.high-prio-pool-ratio"] =
    "state_backend.memory.high_prio_pool_ratio",

  ["execution.checkpointing.interval"] = "checkpoint.interval",
  ["execution.checkpointing.mode"] = {
    path = "checkpoint.mode",
    spec = flink_enum { { "EXACTLY_ONCE", "exactly_once" }, { "AT_LEAST_ONCE", "at_least_once" } },
  },
  ["execution.checkpointing.timeout"] = "checkpoint.timeout",
  ["execution.checkpointing.min-pause"] = "checkpoint.min_pause",
  ["execution.checkpointing.max-concurrent-checkpoints"] = "checkpoint.max_concurrent",
  ["execution.checkpointing.externalized-checkpoint-retention"] = {
    path = "checkpoint.externalized",
    spec = flink_enum {
      { "RETAIN_ON_CANCELLATION", "retain_on_cancellation" },
      { "DELETE_ON_CANCELLATION", "delete_on_cancellation" },
      { "NO_EXTERNALIZED_CHECKPOINTS", "none" },
    },
  },
  ["execution.checkpointing.unaligned"] = "checkpoint.unaligned",
  ["execution.checkpointing.unaligned.enabled"] = "checkpoint.unaligned",
  ["execution.checkpointing.aligned-checkpoint-timeout"] = "checkpoint.aligned_timeout",
  ["execution.checkpointing.alignment-timeout"] = "checkpoint.aligned_timeout",
  ["execution.checkpointing.tolerable-failed-checkpoints"] = "checkpoint.tolerable_failures",
  -- Flink's switch compresses with snappy; eddy's compressor is zstd.
  ["execution.checkpointing.snapshot-compression"] = {
    path = "checkpoint.compression",
    spec = validator(nil, function(v, where, textual)
      return FLINK_BOOLEAN.check(v, where, textual) and "zstd" or "none"
    end),
  },
  ["state.checkpoints.dir"] = "checkpoint.dir",
  ["execution.checkpointing.dir"] = "checkpoint.dir",
  ["state.checkpoints.num-retained"] = "checkpoint.retained",
  ["execution.checkpointing.num-retained"] = "checkpoint.retained",
  ["state.checkpoint-storage"] = { spec = CHECKPOINT_STORAGE },
  ["execution.checkpointing.storage"] = { spec = CHECKPOINT_STORAGE },
  ["state.savepoints.dir"] = "savepoint_dir",
  ["execution.checkpointing.savepoint-dir"] = "savepoint_dir",
  ["execution.savepoint.path"] = "restore",
  ["execution.state-recovery.path"] = "restore",
  ["execution.savepoint.ignore-unclaimed-state"] = "allow_non_restored_state",
  ["execution.state-recovery.ignore-unclaimed-state"] = "allow_non_restored_state",

  ["restart-strategy.type"] = { path = "restart.strategy", spec = RESTART_NAMES },
  ["restart-strategy"] = { path = "restart.strategy", spec = RESTART_NAMES },
  ["restart-strategy.fixed-delay.attempts"] = restart_key("fixed_delay", "attempts"),
  ["restart-strategy.fixed-delay.delay"] = restart_key("fixed_delay", "delay"),
  ["restart-strategy.exponential-delay.initial-backoff"] = restart_key("exponential_delay", "initial"),
  ["restart-strategy.exponential-delay.max-backoff"] = restart_key("exponential_delay", "max"),
  ["restart-strategy.exponential-delay.backoff-multiplier"] =
    restart_key("exponential_delay", "multiplier"),
  ["restart-strategy.failure-rate.max-failures-per-interval"] =
    restart_key("failure_rate", "max_failures"),
  ["restart-strategy.failure-rate.failure-rate-interval"] = restart_key("failure_rate", "interval"),
  ["restart-strategy.failure-rate.delay"] = restart_key("failure_rate", "delay"),
}

-- From here on FLINK maps every name -D and `flink` accept, Flink's and
-- eddy's dotted paths alike, to { path, spec }; KNOWN_NAMES lists them all
-- for suggestions.
local KNOWN_NAMES = {}

do
  for key, entry in pairs(FLINK) do
    if type(entry) == "string" then FLINK[key] = { path = entry, spec = LEAVES[entry] } end
    KNOWN_NAMES[#KNOWN_NAMES + 1] = key
  end
  for path, spec in pairs(LEAVES) do
    FLINK[path] = { path = path, spec = spec }
    KNOWN_NAMES[#KNOWN_NAMES + 1] = path
  end
end

---------------------------------------------------------------------------
-- Layers
--
-- A job's configuration comes in layers, lowest precedence first:
--   1  -D key=value        cli.flink
--   2  -p N                cli.parallelism
--   3  flink = { ... }     Flink names written in the job script
--   4  eddy's own keys     the rest of the job script's table
-- As in Flink, what the program says beats what the command line says.
-- Each layer is validated on its own, naming its values its own way (-D,
-- flink["..."], eddy.job: ...), into one flat store of dotted paths; a path
-- keeps the value of its highest layer. Two names for one path in a single
-- layer (state.backend and state.backend.type) must agree.

local DASH_D, DASH_P, FLINK_TABLE, EDDY_KEYS = 1, 2, 3, 4

local Store = {}
Store.__index = Store

local function new_store()
  return setmetatable({ entries = {}, count = 0 }, Store)
end

function Store:put(path, value, where, layer)
  local old = self.entries[path]
  if old and old.layer == layer and old.value ~= value then
    fail("%s: conflicts with %s", where, old.where)
  end
  if old and old.layer >= layer then return end
  self.count = self.count + 1
  self.entries[path] = { value = value, where = where, layer = layer, order = self.count }
end

function Store:get(path)
  return self.entries[path]
end

-- Where to blame a value: where it was set, or the eddy key of a default.
function Store:where(path)
  local entry = self.entries[path]
  return entry and entry.where or field_where("eddy.job", path)
end

-- The entry of higher precedence; either may be nil.
local function newer(a, b)
  if not a or not b then return a or b end
  if a.layer ~= b.layer then return a.layer > b.layer and a or b end
  return a.order > b.order and a or b
end

-- Layer 4: the job table, walked along the schema.
local function put_table(store, fields, t, where, path)
  each_field(fields, t, where, function(key, field, value)
    local field_at, field_path = field_where(where, key), join(path, key)
    if field.fields then
      put_table(store, field.fields, value, field_at, field_path)
    else
      store:put(field_path, field.check(value, field_at), field_at, EDDY_KEYS)
    end
  end)
end

-- Layers 1 and 3: a table of Flink (or eddy dotted) names. Their values may
-- be written as in flink-conf.yaml ("true", "4", "60 s").
local function put_names(store, names, layer, where, where_of)
  for _, key in ipairs(sorted_keys(names)) do
    if type(key) ~= "string" then unknown_key(where, key) end
    local at = where_of(key)
    local entry = FLINK[key]
    if not entry then
      local hint = M.suggest(key, KNOWN_NAMES)
      fail("%s: unknown key%s", at, hint and (" (did you mean '%s'?)"):format(hint) or "")
    end
    local value = entry.spec.check(names[key], at, true)
    if entry.path then store:put(entry.path, value, at, layer) end
  end
end

-- The normalised job: each leaf's value from the store, else its default.
local function build(fields, store, where, path)
  local out = {}
  for key, field in pairs(fields) do
    local field_at, field_path = field_where(where, key), join(path, key)
    if field.fields then
      out[key] = build(field.fields, store, field_at, field_path)
    elseif store:get(field_path) then
      out[key] = store:get(field_path).value
    else
      out[key] = field:absent(field_at)
    end
  end
  return out
end

---------------------------------------------------------------------------
-- What depends on more than one key

local RESTART_KEY_NAMES = sorted_keys(RESTART.fields)

local function strategy_keys_text(strategy, chosen)
  local names = sorted_keys(RESTART_KEYS[strategy])
  local keys = #names > 0 and "its keys: " .. table.concat(names, ", ") or "it takes no keys"
  if chosen then return keys end
  return ("the default %s checkpointing; %s"):format(strategy == "none" and "without" or "with", keys)
end

-- The strategy of the highest layer that names one, else eddy's choice 8.
-- A key of another strategy is an error when it was written at or above the
-- layer that chose the strategy; from a lower layer it was meant for what
-- that layer chose, and is overruled with it. Flink's names for a strategy's
-- keys apply only to that strategy and are ignored otherwise, as in Flink.
local function resolve_restart(store, checkpointing)
  local chosen = store:get("restart.strategy")
  local strategy = chosen and chosen.value or (checkpointing and "fixed_delay" or "none")
  local keys = RESTART_KEYS[strategy]
  for _, key in ipairs(RESTART_KEY_NAMES) do
    local entry = store:get("restart." .. key)
    if entry and key ~= "strategy" and not keys[key] and entry.layer >= (chosen and chosen.layer or 0) then
      fail("%s: not a key of restart strategy %q (%s)", entry.where, strategy,
        strategy_keys_text(strategy, chosen))
    end
  end
  local restart, sources = { strategy = strategy }, {}
  for key, spec in pairs(keys) do
    local entry = newer(store:get("restart." .. key), store:get(("restart.%s.%s"):format(strategy, key)))
    sources[key] = entry
    if entry then
      restart[key] = entry.value
    elseif chosen then
      restart[key] = spec.default
    else
      restart[key] = IMPLICIT_RESTART[strategy][key]
    end
  end
  if strategy == "exponential_delay" and restart.max < restart.initial then
    local blamed = newer(sources.initial, sources.max)
    fail("%s: restart.initial (%dms) must not exceed restart.max (%dms)",
      blamed and blamed.where or "eddy.job: restart", restart.initial, restart.max)
  end
  return restart
end

-- Flink's use-bloom-filter (with bits-per-key, default 10) sets
-- bloom_filter_bits unless an eddy key of a higher layer did; bits-per-key
-- alone does nothing, as in Flink.
local function resolve_bloom(cfg, store)
  local use = store:get(USE_BLOOM)
  if not use or newer(store:get("state_backend.options.bloom_filter_bits"), use) ~= use then return end
  local bits = store:get(BLOOM_BITS)
  cfg.state_backend.options.bloom_filter_bits = use.value and (bits and bits.value or DEFAULT_BLOOM_BITS) or 0
end

local function check_job(cfg, store)
  if cfg.max_parallelism and cfg.max_parallelism < cfg.parallelism then
    local from = store:get("parallelism")
    fail("%s: expected at least the parallelism, %d%s, got %d", store:where("max_parallelism"),
      cfg.parallelism, from and from.layer ~= EDDY_KEYS and " (set by " .. from.where .. ")" or "",
      cfg.max_parallelism)
  end
  -- Flink: "Unaligned checkpoints can only be enabled if
  -- execution.checkpointing.mode is EXACTLY_ONCE and if
  -- execution.checkpointing.max-concurrent-checkpoints is 1".
  local checkpoint = cfg.checkpoint
  if checkpoint.unaligned and checkpoint.mode ~= "exactly_once" then
    fail('%s: unaligned checkpoints need mode "exactly_once", got %q',
      store:where("checkpoint.unaligned"), checkpoint.mode)
  end
  if checkpoint.unaligned and checkpoint.max_concurrent ~= 1 then
    fail("%s: unaligned checkpoints need max_concurrent 1, got %d",
      store:where("checkpoint.unaligned"), checkpoint.max_concurrent)
  end
  -- Both ratios share RocksDB's one block cache (RocksDBMemoryConfiguration).
  local memory = cfg.state_backend.memory
  if memory.write_buffer_ratio + memory.high_prio_pool_ratio > 1 then
    local blamed = newer(store:get("state_backend.memory.write_buffer_ratio"),
      store:get("state_backend.memory.high_prio_pool_ratio"))
    fail("%s: write_buffer_ratio (%s) + high_prio_pool_ratio (%s) must not exceed 1",
      blamed and blamed.where or "eddy.job: state_backend.memory",
      memory.write_buffer_ratio, memory.high_prio_pool_ratio)
  end
end

local CLI = { parallelism = JOB.fields.parallelism, flink = JOB.fields.flink }

local function job(tbl, cli)
  if tbl == nil then tbl = {} end
  local store = new_store()
  put_table(store, JOB.fields, tbl, "eddy.job")
  if tbl.flink then
    put_names(store, tbl.flink, FLINK_TABLE, "eddy.job: flink", function(key)
      return ("eddy.job: flink[%q]"):format(key)
    end)
  end
  if cli ~= nil then
    each_field(CLI, cli, "eddy run", function(key, field, value)
      if key == "flink" then
        put_names(store, field.check(value, "-D"), DASH_D, "-D", function(name) return "-D " .. name end)
      else
        store:put("parallelism", field.check(value, "-p", true), "-p", DASH_P)
      end
    end)
  end
  local cfg = build(JOB.fields, store, "eddy.job")
  cfg.flink = nil
  resolve_bloom(cfg, store)
  cfg.restart = resolve_restart(store, cfg.checkpoint.interval ~= nil)
  check_job(cfg, store)
  return cfg
end

-- M.job(tbl [, cli [, level]]) -> a new, normalised job configuration.
function M.job(tbl, cli, level)
  local cfg = protect(level, job, tbl, cli)
  return cfg
end

---------------------------------------------------------------------------
-- Harness (API.md, "Harness")

local HARNESS = M.table_of {
  process = M.table_of({
    open = M.fn(), process = M.fn { required = true }, on_timer = M.fn(), close = M.fn(),
    process_broadcast = M.fn(), -- a keyed stream connected to a broadcast stream
  }, { required = true }),
  key_by = M.one_of_types { "string", "function", required = true },
  backend = M.enum { "heap", "rocksdb" },
  state_backend = STATE_BACKEND,
  max_parallelism = M.integer { min = 1, max = 32768, default = 128 },
  -- a path, or a snapshot from h:snapshot() or eddy.savepoint.load
  restore = M.one_of_types { "string", "table", "userdata" },
  -- the operator uid its state is kept under in h:snapshot() and
  -- h:savepoint(), and taken from on restore
  uid = M.string(),
}

-- `backend` is shorthand for state_backend.type; the result keeps only the
-- full state_backend, so the harness reads one shape.
local function harness(tbl)
  local cfg = HARNESS.check(tbl, "eddy.harness")
  if cfg.backend then
    if tbl.state_backend ~= nil then
      fail("eddy.harness: backend: give either backend or state_backend, not both")
    end
    cfg.state_backend = STATE_BACKEND.check({ type = cfg.backend }, "eddy.harness: state_backend")
  end
  cfg.backend = nil
  return cfg
end

-- M.harness(tbl [, level]) -> a new, normalised harness configuration.
function M.harness(tbl, level)
  local cfg = protect(level, harness, tbl)
  return cfg
end

---------------------------------------------------------------------------
-- TTL (API.md "TTL", SEMANTICS.md §2)

-- true: the strategy with its defaults; false: off; a table: configured.
local function toggle(spec)
  return validator(nil, function(v, where, textual)
    if v == true then return spec:absent(where) end
    if v == false then return false end
    if type(v) ~= "table" then fail("%s: expected a boolean or a table, got %s", where, show(v)) end
    return spec.check(v, where, textual)
  end)
end

local INCREMENTAL = M.table_of {
  size = M.integer { min = 1, default = 5 },
  every_record = M.boolean { default = false },
}

local COMPACTION_FILTER = M.table_of {
  query_time_after = M.integer { min = 1, default = 1000 },
}

local TTL = M.table_of {
  ttl = M.duration { min = 1, required = true }, -- "TTL is expected to be positive"
  update = M.enum { "on_create_and_write", "on_read_and_write", "disabled", default = "on_create_and_write" },
  visibility = M.enum {
    "never_return_expired", "return_expired_if_not_cleaned_up", default = "never_return_expired",
  },
  time = M.enum { "processing", "event", default = "processing" }, -- eddy's choice 5
  cleanup = M.table_of {
    -- Flink's isCleanupInBackground (disableCleanupInBackground() sets it off)
    background = M.boolean { default = true },
    full_snapshot = M.boolean { default = false },
    incremental = toggle(INCREMENTAL),
    compaction_filter = toggle(COMPACTION_FILTER),
  },
}

-- The cleanup strategies come out resolved: as in Flink's
-- StateTtlConfig.CleanupStrategies, background cleanup gives each strategy
-- the user did not configure its default settings, so every backend finds
-- what to run (heap: incremental; rocksdb: the compaction filter).
local function ttl(tbl)
  local cfg = TTL.check(tbl, "eddy.ttl")
  local cleanup = cfg.cleanup
  if cleanup.incremental == nil then
    cleanup.incremental = cleanup.background and INCREMENTAL.check({}, "eddy.ttl") or false
  end
  if cleanup.compaction_filter == nil then
    cleanup.compaction_filter = cleanup.background and COMPACTION_FILTER.check({}, "eddy.ttl") or false
  end
  return cfg
end

-- M.ttl(tbl [, level]) -> a new, normalised TTL configuration.
function M.ttl(tbl, level)
  local cfg = protect(level, ttl, tbl)
  return cfg
end

-- A time in milliseconds from a number: integers, and floats holding a
-- whole number in range. math.mininteger is Flink's "no timestamp", so it
-- cannot be one. Returns the integer, or nil and what is wrong with `what`.
function M.milliseconds(v, what)
  local ms = math.type(v) == "integer" and v or nil
  if ms == nil and type(v) == "number" then
    if v ~= v or v == math.floor(v) and (v >= 2 ^ 63 or v < -2 ^ 63) then
      return nil, what .. " is out of the range of milliseconds: " .. tostring(v)
    end
    ms = math.tointeger(v)
    if ms == nil then
      return nil, what .. " is not a whole number of milliseconds: " .. tostring(v)
    end
  end
  if ms == nil then
    return nil, what .. " is not a number of milliseconds: " .. tostring(v)
  end
  if ms == math.mininteger then
    return nil, what .. " is math.mininteger, which means \"no timestamp\""
  end
  return ms
end


return M
