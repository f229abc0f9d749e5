-- make bench: runs each benchmark beside its baseline, alternating, 5 times
-- each, and prints the medians and their ratio. Benchmarks print a line
-- with records_per_second=N.
--   lua5.4 scripts/bench/run.lua [runs]

local runs = tonumber(arg and arg[1]) or 5
local lua = os.getenv("LUA") or "lua5.4"

-- Commands: a Lua script (run with lua5.4) or a shell command (sh ...).
local pairs_to_run = {
  { name = "keyed_count (heap, inline, p=1)", bench = "scripts/bench/keyed_count.lua",
    baseline = "scripts/bench/keyed_count_plain.lua", baseline_name = "plain Lua table",
    target = 0.4 },
  -- the same read-modify-write per record as RocksDB's own db_bench does
  -- it (updaterandom: 16-byte keys and values, WAL off, 100,000 keys)
  { name = "keyed_count (rocksdb, inline, p=1)",
    bench = "scripts/bench/keyed_count.lua 2000000 100000 rocksdb",
    baseline = "sh scripts/bench/db_bench_update.sh 2000000 100000",
    baseline_name = "db_bench updaterandom", target = 0.5 },
  -- what keeping timers in RocksDB (Flink's default) costs against keeping
  -- them in memory beside it: no target, a figure to watch
  { name = "timers (rocksdb backend, timers in rocksdb)",
    bench = "scripts/bench/timers.lua 300000 10000 rocksdb",
    baseline = "scripts/bench/timers.lua 300000 10000 heap",
    baseline_name = "timers in memory" },
}

local function measure(command)
  local script = command:match("^sh ") and command or (lua .. " " .. command)
  local p = assert(io.popen(script .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  local rate = tonumber(out:match("records_per_second=(%d+)"))
  if not ok or not rate then
    error(command .. " failed:\n" .. out)
  end
  return rate
end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local function fmt(n)
  return tostring(math.floor(n + 0.5)):reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

for _, b in ipairs(pairs_to_run) do
  local eddy_rates, base_rates = {}, {}
  for i = 1, runs do
    eddy_rates[i] = measure(b.bench)
    base_rates[i] = measure(b.baseline)
    io.write(("  run %d: eddy %s records/s, %s %s records/s\n")
      :format(i, fmt(eddy_rates[i]), b.baseline_name, fmt(base_rates[i])))
  end
  local e, base = median(eddy_rates), median(base_rates)
  io.write(("%s: median %s records/s; %s: median %s records/s; ratio %.2f%s\n")
    :format(b.name, fmt(e), b.baseline_name, fmt(base), e / base,
            b.target and (" (target >= %.2f)"):format(b.target) or ""))
end

-- The checkpoint benchmark compares with the zstd command line itself.
io.write("\n")
io.flush()
assert(os.execute(lua .. " scripts/bench/checkpoint.lua " .. math.min(runs, 3)), "checkpoint.lua failed")
-- Incremental checkpoints on RocksDB against full ones of the same state.
io.write("\n")
io.flush()
assert(os.execute(lua .. " scripts/bench/incremental.lua " .. math.min(runs, 3)), "incremental.lua failed")
