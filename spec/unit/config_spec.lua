-- eddy.config: validation and normalisation of every user configuration.

local config = require "eddy.config"

-- The message of the error f(...) raises. Called through pcall directly, the
-- public functions' default level points at pcall, a C function, so the
-- message has no position and can be compared whole.
local function err(f, ...)
  local ok, message = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return message
end

-- The message of a validator's check, which raises a failure object rather
-- than a string: public entry points do the conversion.
local function failure(v, value, textual)
  local ok, failure_object = pcall(v.check, value, "f", textual)
  assert.is_false(ok, "expected a failure")
  return tostring(failure_object)
end

local function deep_copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = deep_copy(v) end
  return out
end

local DEFAULT_JOB = {
  name = "job",
  parallelism = 1,
  state_backend = {
    type = "heap", incremental = false, timers = "rocksdb", predefined = "default", options = {},
    memory = { managed = true, write_buffer_ratio = 0.5, high_prio_pool_ratio = 0.1 },
  },
  checkpoint = {
    mode = "exactly_once", timeout = 600000, min_pause = 0, max_concurrent = 1, retained = 1,
    externalized = "none", unaligned = false, aligned_timeout = 0, tolerable_failures = 0,
    compression = "zstd", zstd_level = 1,
  },
  restart = { strategy = "none" },
  processing_time = "system",
  trace = false,
  control = true,
  allow_non_restored_state = false,
}

describe("eddy.config", function()
  describe("duration", function()
    it("reads numbers as milliseconds", function()
      assert.equal(0, config.duration(0, "d"))
      assert.equal(250, config.duration(250, "d"))
      assert.equal(2, config.duration(2.0, "d"))
      assert.equal("integer", math.type(config.duration(2.0, "d")))
    end)

    it("reads eddy's units", function()
      assert.equal(250, config.duration("250ms", "d"))
      assert.equal(5000, config.duration("5s", "d"))
      assert.equal(600000, config.duration("10m", "d"))
      assert.equal(86400000, config.duration("24h", "d"))
      assert.equal(604800000, config.duration("7d", "d"))
      assert.equal(0, config.duration("0", "d"))
      assert.equal(500, config.duration("500", "d"))
    end)

    it("reads Flink's spellings, spaces and any case", function()
      assert.equal(5000, config.duration("5 s", "d"))
      assert.equal(300000, config.duration("5 min", "d"))
      assert.equal(300000, config.duration("5 MIN", "d"))
      assert.equal(10000, config.duration("10 sec", "d"))
      assert.equal(7200000, config.duration("2 hours", "d"))
      assert.equal(86400000, config.duration("1 day", "d"))
      assert.equal(100, config.duration("100 millis", "d"))
      assert.equal(60000, config.duration("60 s", "d"))
      assert.equal(3000, config.duration("3 seconds", "d"))
    end)

    it("reads decimal amounts exactly and returns integers", function()
      assert.equal(1500, config.duration("1.5s", "d"))
      assert.equal(1100, config.duration("1.1s", "d"))
      assert.equal(500, config.duration(".5s", "d"))
      assert.equal("integer", math.type(config.duration("1.5s", "d")))
      assert.equal("integer", math.type(config.duration("10m", "d")))
    end)

    it("refuses what is not a duration", function()
      assert.equal('where: expected a duration like "5s", got "fast"', err(config.duration, "fast", "where"))
      assert.equal('where: expected a duration like "5s", got -5', err(config.duration, -5, "where"))
      assert.equal('where: expected a duration like "5s", got "-5s"', err(config.duration, "-5s", "where"))
      assert.equal('where: expected a duration like "5s", got ""', err(config.duration, "", "where"))
      assert.equal('where: expected a duration like "5s", got true', err(config.duration, true, "where"))
      assert.equal('where: expected a duration like "5s", got nil', err(config.duration, nil, "where"))
      assert.equal('where: expected a duration like "5s", got "5 weeks"', err(config.duration, "5 weeks", "where"))
      assert.equal('where: expected a duration like "5s", got inf', err(config.duration, math.huge, "where"))
      assert.equal('where: expected a duration like "5s", got "99999999999999999999s"',
        err(config.duration, "99999999999999999999s", "where"))
    end)

    it("refuses fractions of a millisecond and says so", function()
      assert.equal('where: expected a duration like "5s", got 1.5 (not a whole number of milliseconds)',
        err(config.duration, 1.5, "where"))
      assert.equal('where: expected a duration like "5s", got "1.5ms" (not a whole number of milliseconds)',
        err(config.duration, "1.5ms", "where"))
      assert.equal('where: expected a duration like "5s", got "1.0001s" (not a whole number of milliseconds)',
        err(config.duration, "1.0001s", "where"))
    end)

    it("builds a validator when given no value", function()
      local v = config.duration { min = 10, default = "1m" }
      assert.equal(60000, v.default)
      assert.equal(2000, v.check("2s", "x"))
      assert.equal('f: expected a duration of at least 10ms, got "5ms"', failure(v, "5ms"))
    end)
  end)

  describe("size", function()
    it("reads numbers as bytes and units as binary multiples", function()
      assert.equal(100, config.size(100, "s"))
      assert.equal(512, config.size("512b", "s"))
      assert.equal(65536, config.size("64kb", "s"))
      assert.equal(268435456, config.size("256MB", "s"))
      assert.equal(1073741824, config.size("1gb", "s"))
      assert.equal(1572864, config.size("1.5mb", "s"))
    end)

    it("reads Flink's spellings", function()
      assert.equal(67108864, config.size("64 mb", "s"))
      assert.equal(268435456, config.size("256m", "s"))
      assert.equal(1073741824, config.size("1g", "s"))
      assert.equal(10240, config.size("10k", "s"))
      assert.equal(4096, config.size("4 KiB", "s"))
      assert.equal(8, config.size("8 bytes", "s"))
    end)

    it("refuses what is not a size", function()
      assert.equal('where: expected a size like "64MB", got "big"', err(config.size, "big", "where"))
      assert.equal('where: expected a size like "64MB", got -1', err(config.size, -1, "where"))
      assert.equal('where: expected a size like "64MB", got "1.1kb" (not a whole number of bytes)',
        err(config.size, "1.1kb", "where"))
    end)
  end)

  describe("suggest", function()
    it("finds typos and transpositions", function()
      assert.equal("parallelism", config.suggest("paralelism", { "name", "parallelism" }))
      assert.equal("interval", config.suggest("intreval", { "interval", "timeout" }))
    end)

    it("finds the one candidate the word begins", function()
      assert.equal("rocksdb", config.suggest("rocks", { "heap", "rocksdb" }))
      assert.is_nil(config.suggest("checkpoint", { "checkpoint.dir", "checkpoint.interval" }))
    end)

    it("says nothing when nothing is close", function()
      assert.is_nil(config.suggest("x", { "max" }))
      assert.is_nil(config.suggest("fast", { "heap", "rocksdb" }))
      assert.is_nil(config.suggest(42, { "a" }))
    end)

    it("breaks ties alphabetically", function()
      assert.equal("ac", config.suggest("ab", { "ba", "ac" }))
      assert.equal("ac", config.suggest("ab", { "ac", "ba" }))
    end)
  end)

  describe("validator kit", function()
    it("enum: matches any case, returns the declared spelling, suggests", function()
      local v = config.enum { "jsonl", "csv", "lines", default = "jsonl" }
      assert.equal("csv", v.check("CSV", "f"))
      assert.equal("jsonl", v.default)
      assert.equal('f: expected one of "jsonl", "csv", "lines", got "jsnl" (did you mean "jsonl"?)',
        failure(v, "jsnl"))
      assert.equal('f: expected one of "jsonl", "csv", "lines", got 3', failure(v, 3))
    end)

    it("enum: maps spellings", function()
      local v = config.enum { "yes", "no", map = { yes = true, no = false } }
      assert.is_false(v.check("NO", "f"))
    end)

    it("integer: bounds in messages", function()
      assert.equal("f: expected an integer, got 1.5", failure(config.integer(), 1.5))
      assert.equal("f: expected an integer >= 1, got 0", failure(config.integer { min = 1 }, 0))
      assert.equal("f: expected an integer from 1 to 19, got 20",
        failure(config.integer { min = 1, max = 19 }, 20))
      assert.equal('f: expected an integer, got "4"', failure(config.integer(), "4"))
      assert.equal(4, config.integer().check("4", "f", true))
      assert.equal("integer", math.type(config.integer().check(4.0, "f")))
    end)

    it("number: exclusive bounds", function()
      local v = config.number { above = 0, below = 1 }
      assert.equal(0.5, v.check(0.5, "f"))
      assert.equal("f: expected a number > 0 and < 1, got 1", failure(v, 1))
      assert.equal("f: expected a number > 0 and < 1, got 0", failure(v, 0))
      assert.matches("^f: expected a number, got %-?nan$", failure(config.number(), 0 / 0))
      assert.equal("f: expected a number, got inf", failure(config.number(), math.huge))
    end)

    it("boolean: only booleans, and true/false words from configuration text", function()
      assert.is_true(config.boolean().check(true, "f"))
      assert.is_false(config.boolean().check("FALSE", "f", true))
      assert.equal('f: expected a boolean, got "true"', failure(config.boolean(), "true"))
      assert.equal('f: expected a boolean, got "yes"', failure(config.boolean(), "yes", true))
    end)

    it("string, fn, one_of_types", function()
      assert.equal("f: expected a string, got 1", failure(config.string(), 1))
      assert.equal('f: expected a function, got "x"', failure(config.fn(), "x"))
      assert.equal("f: expected a string or a function, got a table",
        failure(config.one_of_types { "string", "function" }, {}))
      assert.equal("f: expected a string, a table or a userdata, got 1",
        failure(config.one_of_types { "string", "table", "userdata" }, 1))
    end)

    it("check_options: defaults, nesting, unknown keys, required keys", function()
      local schema = {
        format = config.enum { "jsonl", "csv", "lines", default = "lines" },
        header = config.boolean { default = true },
        on_error = config.enum { "fail", "skip" },
        retry = config.table_of { every = config.duration { default = "1s" } },
      }
      assert.same({ format = "lines", header = true, retry = { every = 1000 } },
        config.check_options(nil, schema, "from_file"))
      assert.same({ format = "csv", header = false, retry = { every = 5 } },
        config.check_options({ format = "csv", header = false, retry = { every = 5 } }, schema, "from_file"))
      assert.equal("from_file: unknown key 'heder' (did you mean 'header'?)",
        err(config.check_options, { heder = true }, schema, "from_file"))
      assert.equal("from_file: retry: unknown key 'evry' (did you mean 'every'?)",
        err(config.check_options, { retry = { evry = 1 } }, schema, "from_file"))
      assert.equal('from_file: retry.every: expected a duration like "5s", got "often"',
        err(config.check_options, { retry = { every = "often" } }, schema, "from_file"))
      assert.equal('from_file: expected a table, got "csv"', err(config.check_options, "csv", schema, "from_file"))
      assert.equal("from_file: unknown key [1]", err(config.check_options, { "x" }, schema, "from_file"))
      local required = { fn = config.fn { required = true } }
      assert.equal("opts: fn: expected a function, got nil", err(config.check_options, {}, required, "opts"))
    end)

    it("check_options accepts a table_of as the schema", function()
      local schema = config.table_of { n = config.integer { default = 3 } }
      assert.same({ n = 3 }, config.check_options({}, schema, "x"))
    end)
  end)

  describe("error positions", function()
    it("point at the caller's line, with no position inside config.lua", function()
      local ok, message = pcall(function()
        local cfg = config.job { paralelism = 2 }
        return cfg
      end)
      assert.is_false(ok)
      assert.matches("^[^:]*config_spec%.lua:%d+: eddy%.job: unknown key 'paralelism'", message)
      assert.is_nil(message:find("config.lua", 1, true))
    end)

    it("follow the level a wrapper passes", function()
      local function wrapper(tbl) -- like eddy.job in init.lua
        local cfg = config.job(tbl, nil, 3)
        return cfg
      end
      local line
      local ok, message = pcall(function()
        line = debug.getinfo(1, "l").currentline + 1
        local cfg = wrapper { checkpoint = { interval = "fast" } }
        return cfg
      end)
      assert.is_false(ok)
      assert.matches("config_spec%.lua:" .. line .. ": eddy%.job: checkpoint%.interval:", message)
    end)

    it("level 0 gives no position", function()
      local ok, message = pcall(function()
        local ms = config.duration("fast", "d", 0)
        return ms
      end)
      assert.is_false(ok)
      assert.equal('d: expected a duration like "5s", got "fast"', message)
    end)

    it("apply to every public entry point", function()
      local function position_of(f)
        local ok, message = pcall(f)
        assert.is_false(ok)
        return message:match("^[^:]*config_spec%.lua:%d+: ")
      end
      assert.truthy(position_of(function() local x = config.size("big", "s") return x end))
      assert.truthy(position_of(function() local x = config.ttl {} return x end))
      assert.truthy(position_of(function() local x = config.harness {} return x end))
      assert.truthy(position_of(function() local x = config.check_options({ a = 1 }, {}, "o") return x end))
    end)

    it("leave errors that are not validation failures alone", function()
      local boom = config.table_of { x = { check = function() error("boom", 0) end } }
      assert.equal("boom", err(config.check_options, { x = 1 }, boom, "o"))
    end)
  end)

  describe("job", function()
    it("has eddy's defaults", function()
      assert.same(DEFAULT_JOB, config.job {})
      assert.same(DEFAULT_JOB, config.job())
      assert.equal("integer", math.type(config.job {}.checkpoint.timeout))
    end)

    it("normalises every key", function()
      local cfg = config.job {
        name = "order-stats", parallelism = 4, max_parallelism = 256, executor = "INLINE",
        state_backend = {
          type = "rocksdb", dir = "/tmp/r", incremental = true, timers = "heap",
          predefined = "flash_ssd_optimized",
          options = {
            write_buffer_size = "64MB", max_write_buffer_number = 3, target_file_size_base = "64MB",
            block_size = "16kb", block_cache_size = "256MB", bloom_filter_bits = 10,
            max_background_jobs = 4, compression = "lz4",
          },
          memory = { managed = false, fixed_per_slot = "256MB", write_buffer_ratio = 0.4, high_prio_pool_ratio = 0 },
        },
        checkpoint = {
          interval = "60s", mode = "at_least_once", timeout = "1m", min_pause = "500ms",
          max_concurrent = 2, dir = "file:///tmp/cp", retained = 3, externalized = "retain_on_cancellation",
          aligned_timeout = "1s", tolerable_failures = 2, compression = "none", zstd_level = 19,
        },
        savepoint_dir = "/tmp/sp",
        restart = { strategy = "failure_rate", max_failures = 3, interval = "5m", delay = "10s" },
        processing_time = "manual",
        watermark_interval = "200ms",
        trace = true,
        control = false,
        restore = "/tmp/sp/savepoint-1",
        allow_non_restored_state = true,
      }
      assert.same({
        name = "order-stats", parallelism = 4, max_parallelism = 256, executor = "inline",
        state_backend = {
          type = "rocksdb", dir = "/tmp/r", incremental = true, timers = "heap",
          predefined = "flash_ssd_optimized",
          options = {
            write_buffer_size = 67108864, max_write_buffer_number = 3, target_file_size_base = 67108864,
            block_size = 16384, block_cache_size = 268435456, bloom_filter_bits = 10,
            max_background_jobs = 4, compression = "lz4",
          },
          memory = { managed = false, fixed_per_slot = 268435456, write_buffer_ratio = 0.4, high_prio_pool_ratio = 0 },
        },
        checkpoint = {
          interval = 60000, mode = "at_least_once", timeout = 60000, min_pause = 500,
          max_concurrent = 2, dir = "file:///tmp/cp", retained = 3, externalized = "retain_on_cancellation",
          unaligned = false, aligned_timeout = 1000, tolerable_failures = 2, compression = "none", zstd_level = 19,
        },
        savepoint_dir = "/tmp/sp",
        restart = { strategy = "failure_rate", max_failures = 3, interval = 300000, delay = 10000 },
        processing_time = "manual",
        watermark_interval = 200,
        trace = true,
        control = false,
        restore = "/tmp/sp/savepoint-1",
        allow_non_restored_state = true,
      }, cfg)
    end)

    it("never changes the table it is given", function()
      local tbl = {
        parallelism = 2,
        checkpoint = { interval = "5s" },
        flink = { ["state.backend"] = "rocksdb" },
        restart = { strategy = "fixed_delay" },
      }
      local cli = { parallelism = 3, flink = { ["execution.checkpointing.timeout"] = "1 min" } }
      local before, cli_before = deep_copy(tbl), deep_copy(cli)
      local cfg = config.job(tbl, cli)
      assert.same(before, tbl)
      assert.same(cli_before, cli)
      assert.are_not.equal(tbl.checkpoint, cfg.checkpoint)
      assert.is_nil(cfg.flink)
    end)

    it("gives the same result when normalised twice", function()
      local cfg = config.job {
        checkpoint = { interval = "5s" },
        state_backend = { type = "rocksdb", options = { block_size = "4kb" } },
      }
      assert.same(cfg, config.job(cfg))
    end)

    describe("errors", function()
      it("name the key and its value", function()
        assert.equal("eddy.job: unknown key 'paralelism' (did you mean 'parallelism'?)",
          err(config.job, { paralelism = 2 }))
        assert.equal("eddy.job: unknown key 'colour'", err(config.job, { colour = "red" }))
        assert.equal('eddy.job: checkpoint.interval: expected a duration like "5s", got "fast"',
          err(config.job, { checkpoint = { interval = "fast" } }))
        assert.equal('eddy.job: state_backend.type: expected one of "heap", "rocksdb", got "rocks" (did you mean "rocksdb"?)',
          err(config.job, { state_backend = { type = "rocks" } }))
        assert.equal("eddy.job: checkpoint: unknown key 'intervall' (did you mean 'interval'?)",
          err(config.job, { checkpoint = { intervall = "5s" } }))
        assert.equal("eddy.job: state_backend.options: unknown key 'block_sise' (did you mean 'block_size'?)",
          err(config.job, { state_backend = { options = { block_sise = 1 } } }))
        assert.equal('eddy.job: expected a table, got "x"', err(config.job, "x"))
        assert.equal('eddy.job: checkpoint: expected a table, got "5s"', err(config.job, { checkpoint = "5s" }))
      end)

      it("check ranges", function()
        assert.equal("eddy.job: parallelism: expected an integer from 1 to 32768, got 0",
          err(config.job, { parallelism = 0 }))
        assert.equal("eddy.job: parallelism: expected an integer from 1 to 32768, got 1.5",
          err(config.job, { parallelism = 1.5 }))
        assert.equal("eddy.job: max_parallelism: expected an integer from 1 to 32768, got 40000",
          err(config.job, { max_parallelism = 40000 }))
        assert.equal('eddy.job: checkpoint.interval: expected a duration of at least 10ms, got "5ms"',
          err(config.job, { checkpoint = { interval = "5ms" } }))
        assert.equal("eddy.job: state_backend.options.block_size: expected a size of at least 1 byte, got 0",
          err(config.job, { state_backend = { options = { block_size = 0 } } }))
        assert.equal("eddy.job: checkpoint.zstd_level: expected an integer from 1 to 19, got 22",
          err(config.job, { checkpoint = { zstd_level = 22 } }))
        assert.equal("eddy.job: checkpoint.retained: expected an integer from 1 to 2147483647, got 0",
          err(config.job, { checkpoint = { retained = 0 } }))
        assert.equal("eddy.job: checkpoint.tolerable_failures: expected an integer from 0 to 2147483647, got -1",
          err(config.job, { checkpoint = { tolerable_failures = -1 } }))
        assert.equal("eddy.job: state_backend.memory.write_buffer_ratio: expected a number > 0 and < 1, got 1",
          err(config.job, { state_backend = { memory = { write_buffer_ratio = 1 } } }))
        assert.equal("eddy.job: state_backend.memory.high_prio_pool_ratio: expected a number >= 0 and < 1, got 1",
          err(config.job, { state_backend = { memory = { high_prio_pool_ratio = 1 } } }))
        assert.equal('eddy.job: state_backend.options.compression: expected one of "zstd", "lz4", "snappy", "none", got "gzip"',
          err(config.job, { state_backend = { options = { compression = "gzip" } } }))
        assert.equal('eddy.job: checkpoint.externalized: expected one of "none", "retain_on_cancellation", "delete_on_cancellation", got "retain" (did you mean "retain_on_cancellation"?)',
          err(config.job, { checkpoint = { externalized = "retain" } }))
      end)

      it("check keys against each other", function()
        assert.equal("eddy.job: max_parallelism: expected at least the parallelism, 8, got 4",
          err(config.job, { parallelism = 8, max_parallelism = 4 }))
        assert.equal("eddy.job: max_parallelism: expected at least the parallelism, 8 (set by -p), got 4",
          err(config.job, { max_parallelism = 4 }, { parallelism = 8 }))
        assert.equal('eddy.job: checkpoint.unaligned: unaligned checkpoints need mode "exactly_once", got "at_least_once"',
          err(config.job, { checkpoint = { unaligned = true, mode = "at_least_once" } }))
        assert.equal("eddy.job: checkpoint.unaligned: unaligned checkpoints need max_concurrent 1, got 2",
          err(config.job, { checkpoint = { unaligned = true, max_concurrent = 2 } }))
        assert.equal("eddy.job: state_backend.memory.write_buffer_ratio: write_buffer_ratio (0.95) + high_prio_pool_ratio (0.1) must not exceed 1",
          err(config.job, { state_backend = { memory = { write_buffer_ratio = 0.95 } } }))
      end)
    end)

    describe("restart", function()
      it("defaults to none without checkpointing", function()
        assert.same({ strategy = "none" }, config.job {}.restart)
      end)

      it("defaults to 3 attempts 1 s apart with checkpointing (eddy's choice 8)", function()
        assert.same({ strategy = "fixed_delay", attempts = 3, delay = 1000 },
          config.job { checkpoint = { interval = "1s" } }.restart)
        assert.same({ strategy = "fixed_delay", attempts = 5, delay = 1000 },
          config.job { checkpoint = { interval = "1s" }, restart = { attempts = 5 } }.restart)
      end)

      it("gives each chosen strategy Flink's defaults", function()
        assert.same({ strategy = "fixed_delay", attempts = 1, delay = 1000 },
          config.job { restart = { strategy = "fixed_delay" } }.restart)
        assert.same({ strategy = "exponential_delay", initial = 1000, max = 60000, multiplier = 1.5 },
          config.job { restart = { strategy = "exponential_delay" } }.restart)
        assert.same({ strategy = "failure_rate", max_failures = 1, interval = 60000, delay = 1000 },
          config.job { restart = { strategy = "failure_rate" } }.restart)
        assert.same({ strategy = "none" }, config.job { restart = { strategy = "none" }, checkpoint = { interval = 100 } }.restart)
      end)

      it("reads each strategy's keys", function()
        assert.same({ strategy = "fixed_delay", attempts = 3, delay = 30000 },
          config.job { restart = { strategy = "fixed_delay", attempts = 3, delay = "30s" } }.restart)
        assert.same({ strategy = "exponential_delay", initial = 1000, max = 60000, multiplier = 2 },
          config.job { restart = { strategy = "exponential_delay", initial = "1s", max = "1m", multiplier = 2 } }.restart)
      end)

      it("refuses a key of another strategy, naming the strategy", function()
        assert.equal('eddy.job: restart.max_failures: not a key of restart strategy "fixed_delay" (its keys: attempts, delay)',
          err(config.job, { restart = { strategy = "fixed_delay", max_failures = 3 } }))
        assert.equal('eddy.job: restart.attempts: not a key of restart strategy "none" (it takes no keys)',
          err(config.job, { restart = { strategy = "none", attempts = 3 } }))
        assert.equal('eddy.job: restart.attempts: not a key of restart strategy "none" (the default without checkpointing; it takes no keys)',
          err(config.job, { restart = { attempts = 3 } }))
        assert.equal('eddy.job: restart.multiplier: not a key of restart strategy "fixed_delay" (the default with checkpointing; its keys: attempts, delay)',
          err(config.job, { checkpoint = { interval = "1s" }, restart = { multiplier = 3 } }))
        assert.equal("eddy.job: restart: unknown key 'attemps' (did you mean 'attempts'?)",
          err(config.job, { restart = { strategy = "fixed_delay", attemps = 3 } }))
        assert.equal('eddy.job: restart.strategy: expected one of "none", "fixed_delay", "exponential_delay", "failure_rate", got "fixed" (did you mean "fixed_delay"?)',
          err(config.job, { restart = { strategy = "fixed" } }))
      end)

      it("checks the backoff bounds", function()
        assert.equal("eddy.job: restart.max: restart.initial (10000ms) must not exceed restart.max (5000ms)",
          err(config.job, { restart = { strategy = "exponential_delay", initial = "10s", max = "5s" } }))
        assert.equal("-D restart-strategy.exponential-delay.initial-backoff: restart.initial (300000ms) must not exceed restart.max (60000ms)",
          err(config.job, { restart = { strategy = "exponential_delay" } },
            { flink = { ["restart-strategy.exponential-delay.initial-backoff"] = "5 min" } }))
        assert.equal("eddy.job: restart.multiplier: expected a number >= 1, got 0.5",
          err(config.job, { restart = { strategy = "exponential_delay", multiplier = 0.5 } }))
      end)

      it("takes Flink's names, applying only those of the chosen strategy", function()
        local cfg = config.job { flink = {
          ["restart-strategy.type"] = "exponential-delay",
          ["restart-strategy.exponential-delay.initial-backoff"] = "2 s",
          ["restart-strategy.exponential-delay.max-backoff"] = "1 min",
          ["restart-strategy.exponential-delay.backoff-multiplier"] = "3.0",
          ["restart-strategy.fixed-delay.attempts"] = "7",
        } }
        assert.same({ strategy = "exponential_delay", initial = 2000, max = 60000, multiplier = 3.0 }, cfg.restart)
        cfg = config.job { flink = {
          ["restart-strategy"] = "failurerate",
          ["restart-strategy.failure-rate.max-failures-per-interval"] = 4,
          ["restart-strategy.failure-rate.failure-rate-interval"] = "10 min",
          ["restart-strategy.failure-rate.delay"] = "5 s",
          ["restart-strategy.fixed-delay.delay"] = "1 h",
        } }
        assert.same({ strategy = "failure_rate", max_failures = 4, interval = 600000, delay = 5000 }, cfg.restart)
        assert.same({ strategy = "fixed_delay", attempts = 2, delay = 1000 }, config.job { flink = {
          ["restart-strategy"] = "fixed-delay", ["restart-strategy.fixed-delay.attempts"] = 2 } }.restart)
        for _, off in ipairs { "none", "off", "disable", "NONE" } do
          assert.same({ strategy = "none" }, config.job({ checkpoint = { interval = "1s" } },
            { flink = { ["restart-strategy.type"] = off } }).restart)
        end
      end)

      it("lets the job's strategy overrule -D keys written for another", function()
        local cfg = config.job({ restart = { strategy = "none" } },
          { flink = { ["restart.attempts"] = "5", ["restart-strategy"] = "fixed-delay" } })
        assert.same({ strategy = "none" }, cfg.restart)
        cfg = config.job({ restart = { strategy = "fixed_delay" } }, { flink = { ["restart.attempts"] = "5" } })
        assert.same({ strategy = "fixed_delay", attempts = 5, delay = 1000 }, cfg.restart)
      end)
    end)

    describe("Flink names", function()
      it("map onto eddy's keys, with values as flink-conf.yaml writes them", function()
        local cfg = config.job { flink = {
          ["pipeline.name"] = "wordcount",
          ["parallelism.default"] = "4",
          ["pipeline.max-parallelism"] = "128",
          ["pipeline.auto-watermark-interval"] = "200 ms",
          ["state.backend.type"] = "rocksdb",
          ["state.backend.incremental"] = "true",
          ["state.backend.rocksdb.localdir"] = "/tmp/rocks",
          ["state.backend.rocksdb.predefined-options"] = "SPINNING_DISK_OPTIMIZED_HIGH_MEM",
          ["state.backend.rocksdb.writebuffer.size"] = "64 mb",
          ["state.backend.rocksdb.writebuffer.count"] = "4",
          ["state.backend.rocksdb.compaction.level.target-file-size-base"] = "32mb",
          ["state.backend.rocksdb.block.blocksize"] = "16 kb",
          ["state.backend.rocksdb.block.cache-size"] = "256m",
          ["state.backend.rocksdb.use-bloom-filter"] = "true",
          ["state.backend.rocksdb.bloom-filter.bits-per-key"] = "12.5",
          ["state.backend.rocksdb.thread.num"] = "8",
          ["state.backend.rocksdb.timer-service.factory"] = "HEAP",
          ["state.backend.rocksdb.memory.managed"] = "false",
          ["state.backend.rocksdb.memory.fixed-per-slot"] = "128 mb",
          ["state.backend.rocksdb.memory.write-buffer-ratio"] = "0.6",
          ["state.backend.rocksdb.memory.high-prio-pool-ratio"] = "0.2",
          ["execution.checkpointing.interval"] = "60 s",
          ["execution.checkpointing.mode"] = "EXACTLY_ONCE",
          ["execution.checkpointing.timeout"] = "5 min",
          ["execution.checkpointing.min-pause"] = "1 s",
          ["execution.checkpointing.max-concurrent-checkpoints"] = "1",
          ["execution.checkpointing.externalized-checkpoint-retention"] = "RETAIN_ON_CANCELLATION",
          ["execution.checkpointing.unaligned"] = "true",
          ["execution.checkpointing.aligned-checkpoint-timeout"] = "30 s",
          ["execution.checkpointing.tolerable-failed-checkpoints"] = "3",
          ["execution.checkpointing.snapshot-compression"] = "false",
          ["state.checkpoints.dir"] = "file:///tmp/cp",
          ["state.checkpoints.num-retained"] = "2",
          ["state.checkpoint-storage"] = "filesystem",
          ["state.savepoints.dir"] = "/tmp/sp",
          ["execution.savepoint.path"] = "/tmp/sp/savepoint-1",
          ["execution.savepoint.ignore-unclaimed-state"] = "true",
        } }
        assert.same({
          name = "wordcount", parallelism = 4, max_parallelism = 128,
          state_backend = {
            type = "rocksdb", dir = "/tmp/rocks", incremental = true, timers = "heap",
            predefined = "spinning_disk_optimized_high_mem",
            options = {
              write_buffer_size = 67108864, max_write_buffer_number = 4, target_file_size_base = 33554432,
              block_size = 16384, block_cache_size = 268435456, bloom_filter_bits = 12.5,
              max_background_jobs = 8,
            },
            memory = { managed = false, fixed_per_slot = 134217728, write_buffer_ratio = 0.6, high_prio_pool_ratio = 0.2 },
          },
          checkpoint = {
            interval = 60000, mode = "exactly_once", timeout = 300000, min_pause = 1000, max_concurrent = 1,
            dir = "file:///tmp/cp", retained = 2, externalized = "retain_on_cancellation", unaligned = true,
            aligned_timeout = 30000, tolerable_failures = 3, compression = "none", zstd_level = 1,
          },
          savepoint_dir = "/tmp/sp",
          restart = { strategy = "fixed_delay", attempts = 3, delay = 1000 },
          processing_time = "system",
          watermark_interval = 200,
          trace = false,
          control = true,
          restore = "/tmp/sp/savepoint-1",
          allow_non_restored_state = true,
        }, cfg)
      end)

      it("accept the current names of renamed keys", function()
        local cfg = config.job { flink = {
          ["execution.checkpointing.incremental"] = true,
          ["execution.checkpointing.dir"] = "/cp",
          ["execution.checkpointing.num-retained"] = 3,
          ["execution.checkpointing.savepoint-dir"] = "/sp",
          ["execution.checkpointing.storage"] = "filesystem",
          ["execution.checkpointing.unaligned.enabled"] = true,
          ["execution.checkpointing.alignment-timeout"] = 100,
          ["execution.state-recovery.path"] = "/sp/x",
          ["execution.state-recovery.ignore-unclaimed-state"] = true,
          ["execution.checkpointing.mode"] = "exactly_once",
        } }
        assert.is_true(cfg.state_backend.incremental)
        assert.equal("/cp", cfg.checkpoint.dir)
        assert.equal(3, cfg.checkpoint.retained)
        assert.equal("/sp", cfg.savepoint_dir)
        assert.is_true(cfg.checkpoint.unaligned)
        assert.equal(100, cfg.checkpoint.aligned_timeout)
        assert.equal("/sp/x", cfg.restore)
        assert.is_true(cfg.allow_non_restored_state)
      end)

      it("read every state.backend name", function()
        local expected = { hashmap = "heap", HashMap = "heap", rocksdb = "rocksdb", ROCKSDB = "rocksdb",
          jobmanager = "heap", filesystem = "heap", memory = "heap" }
        for name, backend in pairs(expected) do
          assert.equal(backend, config.job { flink = { ["state.backend"] = name } }.state_backend.type)
        end
        assert.equal('eddy.job: flink["state.backend"]: expected one of "hashmap", "rocksdb", "jobmanager", "filesystem", "memory", got "rocks" (did you mean "rocksdb"?)',
          err(config.job, { flink = { ["state.backend"] = "rocks" } }))
      end)

      it("read NO_EXTERNALIZED_CHECKPOINTS, DELETE_ON_CANCELLATION, AT_LEAST_ONCE and snapshot compression", function()
        local cfg = config.job { flink = {
          ["execution.checkpointing.externalized-checkpoint-retention"] = "NO_EXTERNALIZED_CHECKPOINTS",
          ["execution.checkpointing.mode"] = "AT_LEAST_ONCE",
          ["execution.checkpointing.snapshot-compression"] = true,
        } }
        assert.equal("none", cfg.checkpoint.externalized)
        assert.equal("at_least_once", cfg.checkpoint.mode)
        assert.equal("zstd", cfg.checkpoint.compression)
        assert.equal("delete_on_cancellation", config.job { flink = {
          ["execution.checkpointing.externalized-checkpoint-retention"] = "DELETE_ON_CANCELLATION" } }.checkpoint.externalized)
      end)

      it("turn the bloom filter off, and ignore bits-per-key alone as Flink does", function()
        local options = config.job { flink = { ["state.backend.rocksdb.use-bloom-filter"] = "false",
          ["state.backend.rocksdb.bloom-filter.bits-per-key"] = 12 } }.state_backend.options
        assert.equal(0, options.bloom_filter_bits)
        options = config.job { flink = { ["state.backend.rocksdb.bloom-filter.bits-per-key"] = 12 } }.state_backend.options
        assert.is_nil(options.bloom_filter_bits)
        options = config.job { flink = { ["state.backend.rocksdb.use-bloom-filter"] = true },
          state_backend = { options = { bloom_filter_bits = 4 } } }.state_backend.options
        assert.equal(4, options.bloom_filter_bits)
      end)

      it("read RocksDB's compression per level when it names one type", function()
        local name = "state.backend.rocksdb.compression.per.level"
        assert.equal("lz4", config.job { flink = { [name] = "LZ4_COMPRESSION" } }.state_backend.options.compression)
        assert.equal("none", config.job({}, { flink = { [name] = "NO_COMPRESSION;NO_COMPRESSION" } })
          .state_backend.options.compression)
        assert.equal('-D state.backend.rocksdb.compression.per.level: eddy compresses every level alike: give one compression type, got "NO_COMPRESSION;ZSTD_COMPRESSION"',
          err(config.job, {}, { flink = { [name] = "NO_COMPRESSION;ZSTD_COMPRESSION" } }))
        assert.equal('eddy.job: flink["state.backend.rocksdb.compression.per.level"]: expected one of "ZSTD_COMPRESSION", "LZ4_COMPRESSION", "SNAPPY_COMPRESSION", "NO_COMPRESSION", got "XPRESS_COMPRESSION" (did you mean "LZ4_COMPRESSION"?)',
          err(config.job, { flink = { [name] = "XPRESS_COMPRESSION" } }))
      end)

      it("take the RocksDB folder as a path or a file:// URI", function()
        assert.equal("/var/rocks", config.job { flink = { ["state.backend.rocksdb.localdir"] = "file:///var/rocks" } }
          .state_backend.dir)
        assert.equal("rel/dir", config.job { state_backend = { dir = "rel/dir" } }.state_backend.dir)
        assert.equal('eddy.job: state_backend.dir: expected a folder path, got ""',
          err(config.job, { state_backend = { dir = "" } }))
        assert.equal('eddy.job: state_backend.dir: expected a folder path, got a table',
          err(config.job, { state_backend = { dir = {} } }))
      end)

      it("refuse jobmanager checkpoint storage", function()
        assert.equal('eddy.job: flink["state.checkpoint-storage"]: eddy always writes checkpoints to files; use "filesystem"',
          err(config.job, { flink = { ["state.checkpoint-storage"] = "jobmanager" } }))
        assert.equal('-D execution.checkpointing.storage: eddy always writes checkpoints to files; use "filesystem"',
          err(config.job, {}, { flink = { ["execution.checkpointing.storage"] = "jobmanager" } }))
      end)

      it("name the key as given in errors", function()
        assert.equal('eddy.job: flink["execution.checkpointing.interval"]: expected a duration like "5s", got "soon"',
          err(config.job, { flink = { ["execution.checkpointing.interval"] = "soon" } }))
        assert.equal('-D execution.checkpointing.interval: expected a duration like "5s", got "soon"',
          err(config.job, {}, { flink = { ["execution.checkpointing.interval"] = "soon" } }))
        assert.equal('-D parallelism.default: expected an integer from 1 to 32768, got "many"',
          err(config.job, {}, { flink = { ["parallelism.default"] = "many" } }))
        assert.equal('eddy.job: flink["execution.checkpointing.mode"]: expected one of "EXACTLY_ONCE", "AT_LEAST_ONCE", got "exactly-once" (did you mean "EXACTLY_ONCE"?)',
          err(config.job, { flink = { ["execution.checkpointing.mode"] = "exactly-once" } }))
        assert.equal('-D restart-strategy: expected one of "none", "off", "disable", "fixed-delay", "fixeddelay", "exponential-delay", "exponentialdelay", "failure-rate", "failurerate", got "fixed_delay" (did you mean "fixed-delay"?)',
          err(config.job, {}, { flink = { ["restart-strategy"] = "fixed_delay" } }))
      end)

      it("suggest the closest known key for an unknown one", function()
        assert.equal("eddy.job: flink[\"execution.checkpointing.intervall\"]: unknown key (did you mean 'execution.checkpointing.interval'?)",
          err(config.job, { flink = { ["execution.checkpointing.intervall"] = "5s" } }))
        assert.equal("-D state.backend.typ: unknown key (did you mean 'state.backend.type'?)",
          err(config.job, {}, { flink = { ["state.backend.typ"] = "rocksdb" } }))
        assert.equal("-D checkpoint.intervall: unknown key (did you mean 'checkpoint.interval'?)",
          err(config.job, {}, { flink = { ["checkpoint.intervall"] = "5s" } }))
        assert.equal("-D checkpoint: unknown key", err(config.job, {}, { flink = { checkpoint = "x" } }))
        assert.equal("-D taskmanager.numberOfTaskSlots: unknown key",
          err(config.job, {}, { flink = { ["taskmanager.numberOfTaskSlots"] = "4" } }))
        assert.equal("eddy.job: flink: unknown key [1]", err(config.job, { flink = { "x" } }))
        assert.equal("eddy.job: flink: expected a table, got \"x\"", err(config.job, { flink = "x" }))
      end)

      it("refuse two names for one key that disagree within one table", function()
        assert.equal('eddy.job: flink["state.backend.type"]: conflicts with eddy.job: flink["state.backend"]',
          err(config.job, { flink = { ["state.backend"] = "rocksdb", ["state.backend.type"] = "hashmap" } }))
        assert.equal("rocksdb", config.job { flink = { ["state.backend"] = "rocksdb",
          ["state.backend.type"] = "rocksdb" } }.state_backend.type)
      end)
    end)

    describe("command line", function()
      it("takes -p and -D with Flink or eddy names", function()
        local cfg = config.job({}, { parallelism = 3, flink = {
          ["state.backend"] = "rocksdb",
          ["checkpoint.interval"] = "10s",
          ["checkpoint.unaligned"] = "TRUE",
          ["state_backend.options.block_size"] = "8kb",
          ["max_parallelism"] = "64",
          ["processing_time"] = "manual",
        } })
        assert.equal(3, cfg.parallelism)
        assert.equal("rocksdb", cfg.state_backend.type)
        assert.equal(10000, cfg.checkpoint.interval)
        assert.is_true(cfg.checkpoint.unaligned)
        assert.equal(8192, cfg.state_backend.options.block_size)
        assert.equal(64, cfg.max_parallelism)
        assert.equal("manual", cfg.processing_time)
      end)

      it("refuses bad -p values and unknown fields", function()
        assert.equal("-p: expected an integer from 1 to 32768, got 0", err(config.job, {}, { parallelism = 0 }))
        assert.equal("eddy run: unknown key 'paralelism' (did you mean 'parallelism'?)",
          err(config.job, {}, { paralelism = 2 }))
        assert.equal('-D: expected a table, got "x"', err(config.job, {}, { flink = "x" }))
      end)
    end)

    describe("precedence", function()
      it("is defaults < -D and -p < flink = {...} < eddy keys", function()
        local interval = "execution.checkpointing.interval"
        local cli = { parallelism = 2, flink = { [interval] = "1 s", ["parallelism.default"] = "5",
          ["execution.checkpointing.timeout"] = "1 min" } }
        local cfg = config.job({}, cli)
        assert.equal(2, cfg.parallelism) -- -p over -D parallelism.default
        assert.equal(1000, cfg.checkpoint.interval)

        cfg = config.job({ flink = { [interval] = "2 s", ["parallelism.default"] = 6 } }, cli)
        assert.equal(2000, cfg.checkpoint.interval)
        assert.equal(6, cfg.parallelism)
        assert.equal(60000, cfg.checkpoint.timeout) -- what no higher layer sets stays

        cfg = config.job({ parallelism = 7, checkpoint = { interval = "3s" },
          flink = { [interval] = "2 s", ["parallelism.default"] = 6 } }, cli)
        assert.equal(3000, cfg.checkpoint.interval)
        assert.equal(7, cfg.parallelism)
        assert.equal(60000, cfg.checkpoint.timeout)
      end)

      it("applies per key, not per table", function()
        local cfg = config.job({ state_backend = { type = "rocksdb" } },
          { flink = { ["state.backend.incremental"] = "true", ["state.backend"] = "hashmap" } })
        assert.equal("rocksdb", cfg.state_backend.type)
        assert.is_true(cfg.state_backend.incremental)
      end)
    end)
  end)

  describe("harness", function()
    local fns = { process = function() end }

    it("has defaults", function()
      local cfg = config.harness { process = fns, key_by = "account" }
      assert.equal("account", cfg.key_by)
      assert.equal(128, cfg.max_parallelism)
      assert.equal("heap", cfg.state_backend.type)
      assert.equal(fns.process, cfg.process.process)
      assert.is_nil(cfg.backend)
      assert.is_nil(cfg.restore)
    end)

    it("takes backend as shorthand, or a full state_backend", function()
      local key = function(v) return v.k end
      local cfg = config.harness { process = fns, key_by = key, backend = "rocksdb", max_parallelism = 16,
        restore = "/tmp/sp" }
      assert.equal(key, cfg.key_by)
      assert.same({ type = "rocksdb", incremental = false, timers = "rocksdb", predefined = "default", options = {},
        memory = { managed = true, write_buffer_ratio = 0.5, high_prio_pool_ratio = 0.1 } }, cfg.state_backend)
      assert.equal(16, cfg.max_parallelism)
      assert.equal("/tmp/sp", cfg.restore)
      cfg = config.harness { process = fns, key_by = "k", state_backend = { type = "rocksdb", dir = "/tmp/r" } }
      assert.equal("/tmp/r", cfg.state_backend.dir)
      local snapshot = {}
      assert.equal(snapshot, config.harness { process = fns, key_by = "k", restore = snapshot }.restore)
    end)

    it("refuses what a harness cannot use", function()
      assert.equal("eddy.harness: process: expected a table, got nil", err(config.harness, { key_by = "k" }))
      assert.equal("eddy.harness: process.process: expected a function, got nil",
        err(config.harness, { process = { open = function() end }, key_by = "k" }))
      assert.equal("eddy.harness: process: unknown key 'on_timr' (did you mean 'on_timer'?)",
        err(config.harness, { process = { process = fns.process, on_timr = fns.process }, key_by = "k" }))
      assert.equal("eddy.harness: key_by: expected a string or a function, got nil",
        err(config.harness, { process = fns }))
      assert.equal("eddy.harness: unknown key 'ttl'", err(config.harness, { process = fns, key_by = "k", ttl = 1 }))
      assert.equal("eddy.harness: backend: give either backend or state_backend, not both",
        err(config.harness, { process = fns, key_by = "k", backend = "heap", state_backend = {} }))
      assert.equal('eddy.harness: backend: expected one of "heap", "rocksdb", got "rocks" (did you mean "rocksdb"?)',
        err(config.harness, { process = fns, key_by = "k", backend = "rocks" }))
      assert.equal("eddy.harness: restore: expected a string, a table or a userdata, got 3",
        err(config.harness, { process = fns, key_by = "k", restore = 3 }))
    end)
  end)

  describe("ttl", function()
    it("has Flink's defaults, with background cleanup resolved", function()
      assert.same({
        ttl = 86400000, update = "on_create_and_write", visibility = "never_return_expired", time = "processing",
        cleanup = { background = true, full_snapshot = false,
          incremental = { size = 5, every_record = false }, compaction_filter = { query_time_after = 1000 } },
      }, config.ttl { ttl = "24h" })
    end)

    it("normalises every key", function()
      assert.same({
        ttl = 1000, update = "on_read_and_write", visibility = "return_expired_if_not_cleaned_up", time = "event",
        cleanup = { background = true, full_snapshot = true,
          incremental = { size = 1000, every_record = true }, compaction_filter = { query_time_after = 50 } },
      }, config.ttl { ttl = 1000, update = "on_read_and_write", visibility = "return_expired_if_not_cleaned_up",
        time = "event", cleanup = { full_snapshot = true, incremental = { size = 1000, every_record = true },
          compaction_filter = { query_time_after = 50 } } })
    end)

    it("reads true as a strategy's defaults and false as off", function()
      local cleanup = config.ttl { ttl = 1, cleanup = { background = false, incremental = true } }.cleanup
      assert.same({ background = false, full_snapshot = false, incremental = { size = 5, every_record = false },
        compaction_filter = false }, cleanup)
      cleanup = config.ttl { ttl = 1, cleanup = { compaction_filter = true, incremental = false } }.cleanup
      assert.same({ query_time_after = 1000 }, cleanup.compaction_filter)
      assert.is_false(cleanup.incremental)
    end)

    it("gives the same result when normalised twice", function()
      local cfg = config.ttl { ttl = "1h", cleanup = { background = false } }
      assert.same(cfg, config.ttl(cfg))
    end)

    it("refuses bad values", function()
      assert.equal('eddy.ttl: ttl: expected a duration like "5s", got nil', err(config.ttl, {}))
      assert.equal("eddy.ttl: ttl: expected a duration of at least 1ms, got 0", err(config.ttl, { ttl = 0 }))
      assert.equal('eddy.ttl: update: expected one of "on_create_and_write", "on_read_and_write", "disabled", got "on_read_write" (did you mean "on_read_and_write"?)',
        err(config.ttl, { ttl = 1, update = "on_read_write" }))
      assert.equal('eddy.ttl: time: expected one of "processing", "event", got "wall"',
        err(config.ttl, { ttl = 1, time = "wall" }))
      assert.equal("eddy.ttl: cleanup.incremental.size: expected an integer >= 1, got 0",
        err(config.ttl, { ttl = 1, cleanup = { incremental = { size = 0 } } }))
      assert.equal('eddy.ttl: cleanup.compaction_filter: expected a boolean or a table, got "yes"',
        err(config.ttl, { ttl = 1, cleanup = { compaction_filter = "yes" } }))
      assert.equal("eddy.ttl: cleanup: unknown key 'full_snapshots' (did you mean 'full_snapshot'?)",
        err(config.ttl, { ttl = 1, cleanup = { full_snapshots = true } }))
      assert.equal("eddy.ttl: expected a table, got nil", err(config.ttl))
    end)
  end)
end)
