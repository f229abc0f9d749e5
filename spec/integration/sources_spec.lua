-- Sources: collections, generators, files in every format, standard input,
-- custom Lua sources, and what happens with bad input.

local eddy = require "eddy"
local run = require "run"
local core = require "eddy.core"

local function read_all(build)
  local job = eddy.job {}
  local c = build(job):collect()
  local result = job:run()
  return c:values(), result
end

local function read_file(text, opts, name)
  local dir = run.tmpdir()
  local path = run.write(dir .. "/" .. (name or "input.jsonl"), text)
  local values, result = read_all(function(job) return job:from_file(path, opts) end)
  return values, result, path
end

local function failure_of(text, opts, name)
  local ok, err = pcall(read_file, text, opts, name)
  assert.is_false(ok)
  return err
end

describe("from_collection", function()
  it("emits the records in order, as fresh copies", function()
    local records = { { n = 1 }, "two", 3 }
    local job = eddy.job {}
    local c = job:from_collection(records):map(function(r)
      if type(r) == "table" then r.n = 99 end
      return r
    end):collect()
    job:run()
    assert.are.same({ { n = 99 }, "two", 3 }, c:values())
    assert.are.same({ n = 1 }, records[1])
  end)

  it("refuses a record that cannot be stored when the stream is built", function()
    local job = eddy.job {}
    local ok, err = pcall(job.from_collection, job, { 1, { f = print } })
    assert.is_false(ok)
    assert.matches("from_collection: record 2: cannot store a function at value.f", err, 1, true)
  end)
end)

describe("from_generator", function()
  it("counts from 1 and maps through fn, split over subtasks", function()
    assert.are.same({ 1, 2, 3 }, (read_all(function(job) return job:from_generator { count = 3 } end)))
    assert.are.same({ "#1", "#2" }, (read_all(function(job)
      return job:from_generator { count = 2, fn = function(i) return "#" .. i end }
    end)))
    local values = read_all(function(job)
      return job:from_generator { count = 10, parallelism = 3 }
    end)
    table.sort(values)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, values)
  end)

  it("holds to its rate", function()
    local t0 = core.monotonic_ms()
    local values = read_all(function(job) return job:from_generator { count = 10, rate = 100 } end)
    assert.are.equal(10, #values)
    -- 10 records at 100 per second take at least 90 ms (the first is due at once)
    assert.is_true(core.monotonic_ms() - t0 >= 85)
  end)

  it("rejects bad options and a nil from fn", function()
    local job = eddy.job {}
    assert.has_error(function() job:from_generator { count = -1 } end)
    assert.has_error(function() job:from_generator { cuont = 1 } end)
    local ok, err = pcall(read_all, function(j)
      return j:from_generator { count = 2, fn = function(i) if i == 1 then return 1 end end }
    end)
    assert.is_false(ok)
    assert.matches("from_generator: fn returned nil for 2", err, 1, true)
  end)
end)

describe("from_file", function()
  after_each(run.cleanup)

  it("reads JSON lines with integers, floats, nesting and nulls", function()
    local values = read_file('{"a":1,"b":2.0,"c":{"d":[1,null,3]},"e":null}\n\n"text"\n[true,false]\n')
    assert.are.same({ { a = 1, b = 2.0, c = { d = { [1] = 1, [3] = 3 } } }, "text", { true, false } }, values)
    assert.are.equal("integer", math.type(values[1].a))
    assert.are.equal("float", math.type(values[1].b))
  end)

  it("reads CSV with a header, typing numbers, quoting and CRLF", function()
    local values = read_file('id,name,amount\r\n1,"Smith, J",2.50\r\n2,"multi\nline",007\r\n', nil, "in.csv")
    assert.are.same({
      { id = 1, name = "Smith, J", amount = 2.5 },
      { id = 2, name = "multi\nline", amount = "007" },
    }, values)
    values = read_file("1;2\n3;4\n", { format = "csv", header = false, delimiter = ";", infer_types = false })
    assert.are.same({ { "1", "2" }, { "3", "4" } }, values)
  end)

  it("reads lines as strings, any bytes, empty lines included", function()
    local values = read_file("one\n\n\xff\xfe bytes\nlast without newline", nil, "in.txt")
    assert.are.same({ "one", "", "\xff\xfe bytes", "last without newline" }, values)
  end)

  it("gives nothing for an empty file or one of blank lines", function()
    assert.are.same({}, (read_file("")))
    assert.are.same({}, (read_file("\n  \n\r\n")))
    assert.are.same({}, (read_file("a,b\n", nil, "only-header.csv")))
  end)

  it("reads lines of several megabytes", function()
    local big = string.rep("x", 5 * 1024 * 1024)
    local values = read_file('{"big":"' .. big .. '"}\n{"n":1}\n')
    assert.are.equal(#big, #values[1].big)
    assert.are.same({ n = 1 }, values[2])
  end)

  it("fails on a malformed line with file:line: what", function()
    local err = failure_of('{"ok":1}\n{"broken":\n{"ok":2}\n')
    assert.matches("input.jsonl:2: invalid JSON", err, 1, true)
    err = failure_of("a,b\n1,2\n1,2,3\n", nil, "rows.csv")
    assert.matches("rows.csv:3: expected 2 fields (as in the header), got 3", err, 1, true)
    err = failure_of('"\xff\xfe"\n')
    assert.matches("input.jsonl:1: invalid JSON", err, 1, true)
    err = failure_of(string.rep("[", 150) .. string.rep("]", 150) .. "\n")
    assert.matches("input.jsonl:1:", err, 1, true)
    err = failure_of(string.rep("[", 100000) .. "\n")
    assert.matches("input.jsonl:1:", err, 1, true)
    err = failure_of("null\n")
    assert.matches("input.jsonl:1: a record cannot be null", err, 1, true)
  end)

  it("skips and counts malformed lines with on_error = 'skip'", function()
    -- the report at the end goes to stderr: catch it here
    local real_stderr, said = io.stderr, {}
    io.stderr = { write = function(_, ...) said[#said + 1] = table.concat { ... } end }
    local ok, values, result, path = pcall(read_file, '{"n":1}\nbad\n{"n":2}\n{"n":\n', { on_error = "skip" })
    io.stderr = real_stderr
    assert.is_true(ok, values)
    assert.are.same({ { n = 1 }, { n = 2 } }, values)
    assert.are.equal(2, result.metrics.skipped[path])
    assert.are.equal(1, #said)
    assert.matches("skipped 2 malformed records (first: " .. path .. ":2: invalid JSON", said[1], 1, true)
  end)

  it("reports the skipped lines at the end of eddy run", function()
    local dir = run.tmpdir()
    local path = run.write(dir .. "/orders.jsonl", '{"n":1}\nnot json\n')
    local script = run.write(dir .. "/job.lua", ([[
      local eddy = require "eddy"
      local job = eddy.job {}
      job:from_file(%q, { on_error = "skip" }):print()
      job:run()
    ]]):format(path))
    local out, err, code = run.eddy("run", script)
    assert.are.equal(0, code)
    assert.are.equal("{n = 1}\n", out)
    assert.matches("orders.jsonl: skipped 1 malformed record (first: ", err, 1, true)
    assert.matches("orders.jsonl:2: invalid JSON", err, 1, true)
  end)

  it("says which file is missing", function()
    local ok, err = pcall(read_all, function(job) return job:from_file("/nonexistent/orders.jsonl") end)
    assert.is_false(ok)
    assert.matches("^/nonexistent/orders.jsonl: No such file or directory", err)
  end)

  it("refuses unknown options and formats", function()
    local job = eddy.job {}
    local ok, err = pcall(job.from_file, job, "x.csv", { fromat = "csv" })
    assert.is_false(ok)
    assert.matches("unknown key 'fromat' (did you mean 'format'?)", err, 1, true)
    ok = pcall(job.from_file, job, "x.csv", { format = "xml" })
    assert.is_false(ok)
  end)
end)

describe("from_stdin", function()
  it("reads records piped into eddy run", function()
    local dir = run.tmpdir()
    local script = run.write(dir .. "/job.lua", [[
      local eddy = require "eddy"
      local job = eddy.job {}
      job:from_stdin { format = "jsonl" }:map(function(r) return r.n * 2 end):print()
      job:run()
    ]])
    local out, err, code = run.eddy("run", script, { stdin = '{"n":1}\n{"n":21}\n' })
    assert.are.equal(0, code, err)
    assert.are.equal("2\n42\n", out)
    run.cleanup()
  end)
end)

describe("a custom source", function()
  it("emits what next returns until nil, with open and close", function()
    local calls = {}
    local values = read_all(function(job)
      local i = 0
      return job:source {
        name = "countdown",
        open = function() calls[#calls + 1] = "open" end,
        next = function()
          i = i + 1
          if i <= 3 then return 4 - i end
        end,
        close = function() calls[#calls + 1] = "close" end,
      }
    end)
    assert.are.same({ 3, 2, 1 }, values)
    assert.are.same({ "open", "close" }, calls)
  end)
end)
