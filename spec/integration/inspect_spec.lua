-- `eddy inspect PATH [--operator UID] [--state NAME] [--key K] [--json]`
-- as a user runs it: a job run with `eddy run` leaves a checkpoint behind
-- (its source fails after the first checkpoint, with no restart), and
-- `eddy inspect` shows what is in it, as a table or as JSON lines.

local eddy = require "eddy"
local run = require "run"

-- On the manual clock the checkpoint comes after every record, so its
-- contents are known: keyed state of two kinds at parallelism 2, window
-- contents and timers, event-time timers, and operator state.
local JOB = [[
local eddy = require "eddy"
local chk_dir = ...
local job = eddy.job {
  name = "totals", parallelism = 2, processing_time = "manual",
  checkpoint = { interval = "1s", dir = chk_dir, externalized = "retain_on_cancellation" },
  restart = { strategy = "none" },
}
local records = {
  { user = "ann", amount = 5, ts = 1000 }, { user = "bob", amount = 7, ts = 2000 },
  { user = "ann", amount = 3, ts = 3000 }, { user = 42, amount = 1, ts = 4000 },
}
local i, snapshots = 0, 0
local keyed = job:source {
  name = "orders",
  next = function()
    if snapshots >= 1 then error("stop after the first checkpoint") end
    i = i + 1
    return records[i] or false
  end,
  snapshot = function() snapshots = snapshots + 1; return math.min(i, #records) end,
  restore = function(_, pos) i = pos end,
  timestamp = "ts", watermarks = eddy.watermarks.bounded("1h"),
}:key_by("user")
keyed:process("totals", {
  process = function(ctx, r, out)
    ctx:list_state("amounts"):add(r.amount)
    ctx:reducing_state { name = "total", reduce = function(a, b) return a + b end }:add(r.amount)
    ctx.timers:register_event_time(r.ts + 60000)
    out(r)
  end,
}):collect()
keyed:window(eddy.windows.tumbling("10s"))
  :reduce("sums", function(a, b) return { user = a.user, amount = a.amount + b.amount } end)
  :sink(function() end)
job:run()
]]

-- eddy with TZ=UTC, so that times print the same everywhere
local function inspect(...)
  local parts = { "TZ=UTC", run.quote(run.exe), "inspect" }
  for _, a in ipairs { ... } do
    parts[#parts + 1] = run.quote(a)
  end
  return run.sh(table.concat(parts, " "))
end

local function lines(t)
  return table.concat(t, "\n") .. "\n"
end

describe("eddy inspect", function()
  local dir, path, snap
  setup(function()
    dir = run.tmpdir()
    local script = run.write(dir .. "/job.lua", JOB)
    local _, err, code = run.sh(("%s run %s %s"):format(run.quote(run.exe), run.quote(script),
      run.quote(dir .. "/chk")))
    assert(code == 1 and err:find("stop after the first checkpoint", 1, true), err)
    local p = assert(io.popen("ls -d " .. run.quote(dir) .. "/chk/*/chk-*"))
    path = p:read("l")
    p:close()
    snap = eddy.savepoint.load(path)
  end)
  teardown(run.cleanup)

  local function head()
    return {
      ('checkpoint 1 of "totals" (job %s)'):format(snap.job),
      "  taken " .. os.date("!%Y-%m-%d %H:%M:%S", snap.time // 1000) .. (".%03d"):format(snap.time % 1000),
      "  in " .. path,
    }
  end

  local function with_head(rest)
    local t = head()
    table.move(rest, 1, #rest, #t + 1, t)
    return lines(t)
  end

  it("prints a summary, then every entry and timer as a table", function()
    local out, err, code = inspect(path)
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal(with_head {
      "OPERATOR  VERTEX                       PARALLELISM  STATE            KIND      ENTRIES",
      "source-1  orders -> assign_timestamps  1/128        source-1         operator  1",
      "sums      window reduce sums -> sink   2/128        window-contents  value     3",
      "                                                    (timers)                   3",
      "totals    process totals -> collect    2/128        amounts          list      3",
      "                                                    total            reducing  3",
      "                                                    op-5             operator  2",
      "                                                    (timers)                   4",
      "",
      "OPERATOR  STATE            KIND      KEY        NAMESPACE                  VALUE",
      "source-1  source-1         operator  subtask 0  -                          {position = 4}",
      "sums      window-contents  value     42         {start = 0, stop = 10000}  {amount = 1, ts = 4000, user = 42}",
      'sums      window-contents  value     "bob"      {start = 0, stop = 10000}  {amount = 7, ts = 2000, user = "bob"}',
      'sums      window-contents  value     "ann"      {start = 0, stop = 10000}  {amount = 8, user = "ann"}',
      "totals    amounts          list      42         -                          {1}",
      'totals    amounts          list      "bob"      -                          {7}',
      'totals    amounts          list      "ann"      -                          {5, 3}',
      "totals    total            reducing  42         -                          1",
      'totals    total            reducing  "bob"      -                          7',
      'totals    total            reducing  "ann"      -                          8',
      "totals    op-5             operator  subtask 0  -                          {count = 1}",
      "totals    op-5             operator  subtask 1  -                          {count = 3}",
      "",
      "OPERATOR  TIMER  KEY    NAMESPACE                  TIMESTAMP",
      "sums      event  42     {start = 0, stop = 10000}  9999",
      'sums      event  "bob"  {start = 0, stop = 10000}  9999',
      'sums      event  "ann"  {start = 0, stop = 10000}  9999',
      'totals    event  "ann"  -                          61000',
      'totals    event  "bob"  -                          62000',
      'totals    event  "ann"  -                          63000',
      "totals    event  42     -                          64000",
    }, out)
    -- the _metadata file names the checkpoint as well
    assert.equal(out, (inspect(path .. "/_metadata")))
  end)

  it("prints one JSON object per entry and timer with --json", function()
    local out, err, code = inspect(path, "--json")
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal(lines {
      '{"operator":"source-1","state":"source-1","kind":"operator","key":0,"namespace":null,"key_group":null,"value":{"position":4}}',
      '{"operator":"sums","state":"window-contents","kind":"value","key":42,"namespace":{"start":0,"stop":10000},"key_group":29,"value":{"amount":1,"ts":4000,"user":42}}',
      '{"operator":"sums","state":"window-contents","kind":"value","key":"bob","namespace":{"start":0,"stop":10000},"key_group":87,"value":{"amount":7,"ts":2000,"user":"bob"}}',
      '{"operator":"sums","state":"window-contents","kind":"value","key":"ann","namespace":{"start":0,"stop":10000},"key_group":100,"value":{"amount":8,"user":"ann"}}',
      '{"operator":"totals","state":"amounts","kind":"list","key":42,"namespace":null,"key_group":29,"value":[1]}',
      '{"operator":"totals","state":"amounts","kind":"list","key":"bob","namespace":null,"key_group":87,"value":[7]}',
      '{"operator":"totals","state":"amounts","kind":"list","key":"ann","namespace":null,"key_group":100,"value":[5,3]}',
      '{"operator":"totals","state":"total","kind":"reducing","key":42,"namespace":null,"key_group":29,"value":1}',
      '{"operator":"totals","state":"total","kind":"reducing","key":"bob","namespace":null,"key_group":87,"value":7}',
      '{"operator":"totals","state":"total","kind":"reducing","key":"ann","namespace":null,"key_group":100,"value":8}',
      '{"operator":"totals","state":"op-5","kind":"operator","key":0,"namespace":null,"key_group":null,"value":{"count":1}}',
      '{"operator":"totals","state":"op-5","kind":"operator","key":1,"namespace":null,"key_group":null,"value":{"count":3}}',
      '{"operator":"sums","timer":"event","key":42,"namespace":{"start":0,"stop":10000},"key_group":29,"ts":9999}',
      '{"operator":"sums","timer":"event","key":"bob","namespace":{"start":0,"stop":10000},"key_group":87,"ts":9999}',
      '{"operator":"sums","timer":"event","key":"ann","namespace":{"start":0,"stop":10000},"key_group":100,"ts":9999}',
      '{"operator":"totals","timer":"event","key":"ann","namespace":null,"key_group":100,"ts":61000}',
      '{"operator":"totals","timer":"event","key":"bob","namespace":null,"key_group":87,"ts":62000}',
      '{"operator":"totals","timer":"event","key":"ann","namespace":null,"key_group":100,"ts":63000}',
      '{"operator":"totals","timer":"event","key":42,"namespace":null,"key_group":29,"ts":64000}',
    }, out)
  end)

  it("narrows to an operator, a state and a key", function()
    assert.equal(with_head {
      "",
      "OPERATOR  STATE    KIND      KEY    NAMESPACE  VALUE",
      'totals    amounts  list      "ann"  -          {5, 3}',
      'totals    total    reducing  "ann"  -          8',
      "",
      "OPERATOR  TIMER  KEY    NAMESPACE  TIMESTAMP",
      'totals    event  "ann"  -          61000',
      'totals    event  "ann"  -          63000',
    }, (inspect(path, "--operator", "totals", "--key", "ann")))
    -- a state leaves the timers out
    assert.equal(with_head {
      "",
      "OPERATOR  STATE    KIND  KEY    NAMESPACE  VALUE",
      "totals    amounts  list  42     -          {1}",
      'totals    amounts  list  "bob"  -          {7}',
      'totals    amounts  list  "ann"  -          {5, 3}',
    }, (inspect(path, "--state", "amounts")))
    -- a key that looks like a number matches the integer key
    assert.equal(lines {
      '{"operator":"sums","state":"window-contents","kind":"value","key":42,"namespace":{"start":0,"stop":10000},"key_group":29,"value":{"amount":1,"ts":4000,"user":42}}',
      '{"operator":"totals","state":"amounts","kind":"list","key":42,"namespace":null,"key_group":29,"value":[1]}',
      '{"operator":"totals","state":"total","kind":"reducing","key":42,"namespace":null,"key_group":29,"value":1}',
      '{"operator":"sums","timer":"event","key":42,"namespace":{"start":0,"stop":10000},"key_group":29,"ts":9999}',
      '{"operator":"totals","timer":"event","key":42,"namespace":null,"key_group":29,"ts":64000}',
    }, (inspect("--key", "42", path, "--json")))
    -- --name=value works too; operator state is keyed by subtask
    assert.equal(lines {
      '{"operator":"totals","state":"op-5","kind":"operator","key":1,"namespace":null,"key_group":null,"value":{"count":3}}',
    }, (inspect(path, "--operator=totals", "--state=op-5", "--key=1", "--json")))
    local out, err, code = inspect(path, "--key", "nobody")
    assert.equal(with_head { "", "no entries with key nobody" }, out)
    assert.equal("", err)
    assert.equal(0, code)
  end)

  it("exits 2 on bad usage", function()
    local cases = {
      { {}, "'eddy inspect' needs the path of a checkpoint or savepoint" },
      { { path, "--bogus" }, "unknown option '--bogus' for 'eddy inspect'" },
      { { path, "--json=yes" }, "unknown option '--json=yes' for 'eddy inspect'" },
      { { path, "--key" }, "option '--key' of 'eddy inspect' needs a value" },
      { { path, "--state", "a", "--state", "b" }, "option '--state' of 'eddy inspect' is given twice" },
      { { path, path }, "'eddy inspect' takes one path" },
    }
    for _, c in ipairs(cases) do
      local out, err, code = inspect(table.unpack(c[1]))
      assert.equal("", out)
      assert.equal("eddy: " .. c[2] .. " (see 'eddy --help')\n", err)
      assert.equal(2, code)
    end
  end)

  it("exits 1 with one line on what it cannot read", function()
    local function fails(expected, ...)
      local out, err, code = inspect(...)
      assert.equal("", out)
      assert.equal(1, code)
      assert.equal(1, #run.lines(err), err)
      if expected:sub(1, 1) == "^" then
        assert.truthy(err:find(expected), err)
      else
        assert.equal("eddy: inspect: " .. expected .. "\n", err)
      end
    end
    fails(dir .. "/nope: No such file or directory", dir .. "/nope")
    fails(dir .. ": not a checkpoint or savepoint (no _metadata in it)", dir)
    fails(dir .. "/job.lua: neither a checkpoint folder nor its _metadata", dir .. "/job.lua")
    fails(('no operator "nope" in %s (its operators: source-1, sums, totals)'):format(path),
      path, "--operator", "nope")
    fails(('no state "nope" in %s operator "sums" (its states: window-contents)'):format(path),
      path, "--operator", "sums", "--state", "nope")
    -- a damaged file: a byte of totals-1.keyed flipped
    local copy = dir .. "/copy/chk-1"
    assert(os.execute(("mkdir -p %s && cp -r %s %s"):format(run.quote(dir .. "/copy"), run.quote(path),
      run.quote(copy))))
    local f = assert(io.open(copy .. "/totals-1.keyed", "r+b"))
    local b = f:read(1)
    f:seek("set", 0)
    f:write(string.char(b:byte() ~ 0x01))
    f:close()
    fails(("^eddy: inspect: %s is damaged: chk%%-1/totals%%-1%%.keyed: checksum mismatch %%(expected %%x+, found %%x+%%)\n$")
      :format(copy:gsub("%p", "%%%0")), copy, "--json")
  end)
end)
