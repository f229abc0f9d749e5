-- Baseline for keyed_count.lua: the same records and the same per-key
-- read-modify-write, in plain Lua 5.4 with a table for the state.
--   lua5.4 scripts/bench/keyed_count_plain.lua [records] [keys]

local records = tonumber(arg and arg[1]) or 10000000
local nkeys = tonumber(arg and arg[2]) or 100000

local keys = {}
for i = 1, nkeys do
  keys[i] = "key-" .. i
end

local function now()
  local ok, socket_clock = pcall(function() return require("eddy.core").monotonic_ms end)
  if ok then
    return socket_clock() / 1000
  end
  return os.clock()
end

local t0 = now()
local state = {}
for i = 1, records do
  local r = { key = keys[i % nkeys + 1], amount = i % 100 }
  local s = state[r.key] or { count = 0, total = 0 }
  s.count = s.count + 1
  s.total = s.total + r.amount
  state[r.key] = s
end
local seconds = now() - t0
io.write(("keyed_count_plain: %d records, %d keys, %.2f s, records_per_second=%.0f\n")
  :format(records, nkeys, seconds, records / seconds))
