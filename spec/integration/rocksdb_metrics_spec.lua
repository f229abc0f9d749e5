-- RocksDB's own figures about keyed state, per state, through
-- job:metrics() (and `eddy info`, from the same source): estimated keys,
-- live SST bytes, memtable bytes and block cache usage.

local eddy = require "eddy"
local run = require "run"

local function run_job(backend)
  local job = eddy.job { name = "metrics", parallelism = 2,
                         state_backend = { type = backend, dir = run.tmpdir() } }
  job:from_generator { count = 2000, fn = function(i) return { k = i % 500, v = i } end }:uid("numbers")
    :key_by("k")
    :process("last", {
      process = function(ctx, r)
        ctx:value_state("last"):update(r.v)
        ctx:map_state("seen"):put(r.v % 4, true)
      end,
    })
  return job:run().metrics, job
end

describe("keyed state metrics", function()
  after_each(run.cleanup)

  it("give RocksDB's figures per state, per subtask and summed", function()
    local metrics, job = run_job("rocksdb")
    local v = metrics.vertices[2]
    assert.truthy(v.state, "no state metrics")
    for _, name in ipairs { "last", "seen" } do
      local s = v.state[name]
      assert.truthy(s, name)
      -- RocksDB estimates: every write counts until compaction merges them
      assert.is_true(s.estimated_keys >= 500 and s.estimated_keys <= 2000, tostring(s.estimated_keys))
      assert.is_true(s.memtable_bytes > 0)
      assert.is_true(s.live_sst_bytes >= 0)
      assert.is_true(s.block_cache_bytes >= 0)
      local sum = 0
      for _, st in ipairs(v.subtasks) do
        sum = sum + st.state[name].estimated_keys
      end
      assert.equal(s.estimated_keys, sum)
    end
    -- the same after the run, from job:metrics()
    assert.are.same(metrics.vertices[2].state, job:metrics().vertices[2].state)
    -- the source has no keyed state
    assert.is_nil(metrics.vertices[1].state)
  end)

  it("show bounded memory at work: a small budget flushes memtables to SST files", function()
    local function figures(memory)
      local job = eddy.job { name = "budget", parallelism = 3,
                             state_backend = { type = "rocksdb", dir = run.tmpdir(), memory = memory } }
      local pad = ("x"):rep(100)
      job:from_generator { count = 60000, fn = function(i) return { k = i, pad = pad } end }:uid("rows")
        :key_by("k")
        :process("keep", { process = function(ctx, r) ctx:value_state("row"):update(r) end })
      return job:run().metrics.vertices[2].state.row
    end
    -- 7 MB of rows: within RocksDB's own 64 MB write buffers nothing is
    -- flushed; a 4 MB budget shared by 3 subtasks gives each 1 MB of
    -- memtables, so rows go on to SST files
    local unbounded, bounded = figures { managed = false }, figures { fixed_per_slot = "4MB" }
    assert.equal(0, unbounded.live_sst_bytes)
    assert.is_true(bounded.live_sst_bytes > 0)
    assert.is_true(bounded.memtable_bytes < unbounded.memtable_bytes / 4,
      ("%d vs %d"):format(bounded.memtable_bytes, unbounded.memtable_bytes))
  end)

  it("are absent on the heap backend, which keeps no estimates", function()
    local metrics = run_job("heap")
    assert.is_nil(metrics.vertices[2].state)
  end)
end)
