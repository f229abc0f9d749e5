-- bin/eddy from the outside: exit statuses, one-line errors, `arg` and `...`,
-- usage errors, the options handed to eddy._cli_defaults, and the REPL fed
-- through a pipe (and through a pseudo-terminal made by script(1), for what
-- only a terminal gets: prompts, history, Ctrl-C).
local run = require "spec.helpers.run"

local quote = run.quote

-- eddy with arguments (strings, quoted here) and stdin text (default: none).
local function eddy(args, input, env)
  local parts = { env or "", quote(run.exe) }
  for _, a in ipairs(args) do parts[#parts + 1] = quote(a) end
  return run.sh(table.concat(parts, " "), input or "")
end

-- A fake module under a fake root: it records what _cli_defaults got, so the
-- options can be checked whatever the real module makes of them.
local FAKE_INIT = [[
local M = { version = "9.9.9-fake" }
function M._cli_defaults(opts) M.opts = opts end
return M
]]

-- A job script printing what the fake module received, keys sorted.
local SHOW_OPTS = [[
local function show(v)
  if type(v) ~= "table" then return type(v) == "string" and ("%q"):format(v) or tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. show(v[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end
print(show(require("eddy").opts))
]]

local has_script = os.execute("command -v script >/dev/null 2>&1")

describe("eddy (the executable)", function()
  local dir

  before_each(function()
    dir = run.tmpdir()
  end)

  after_each(function()
    run.cleanup()
  end)

  local function file(name, text)
    return run.write(dir .. "/" .. name, text)
  end

  describe("run", function()
    it("runs a script and exits 0", function()
      local job = file("ok.lua", 'print("hello from the job")')
      local out, err, code = eddy{ "run", job }
      assert.equal("hello from the job\n", out)
      assert.equal("", err)
      assert.equal(0, code)
    end)

    it("sets arg and passes the arguments as ...", function()
      local job = file("args.lua", [[
        print(arg[0], arg[1], arg[2], #arg)
        print(arg[-1], arg[-2], arg[-3])
        print(select("#", ...), ...)
      ]])
      local out, _, code = eddy{ "run", "-p", "2", job, "a b", "-p" }
      assert.equal(0, code)
      local lines = run.lines(out)
      assert.equal(job .. "\ta b\t-p\t2", lines[1])
      assert.equal("2\t-p\trun", lines[2])  -- options, then the subcommand
      assert.equal("2\ta b\t-p", lines[3])  -- options after the script are the script's
    end)

    it("presets the global eddy as the module", function()
      local job = file("global.lua", 'print(eddy == require("eddy"), type(eddy.version))')
      local out, _, code = eddy{ "run", job }
      assert.equal(0, code)
      assert.equal("true\tstring\n", out)
    end)

    it("exits 1 with one line on stderr when the script raises", function()
      local job = file("boom.lua", 'print("before")\nerror("boom\\n  second line\\nthird")')
      local out, err, code = eddy{ "run", job }
      assert.equal(1, code)
      assert.equal("before\n", out)
      assert.equal("eddy: " .. job .. ":2: boom second line third\n", err)
    end)

    it("reports error objects that are not strings", function()
      local job = file("obj.lua", [[error(setmetatable({}, { __tostring = function() return "custom" end }))]])
      local _, err, code = eddy{ "run", job }
      assert.equal(1, code)
      assert.equal("eddy: custom\n", err)
      job = file("tbl.lua", "error({})")
      _, err, code = eddy{ "run", job }
      assert.equal(1, code)
      assert.equal("eddy: (error object is a table value)\n", err)
    end)

    it("adds the traceback with EDDY_TRACEBACK=1", function()
      local job = file("tb.lua", "local function f() error('deep') end\nf()")
      local _, err, code = eddy({ "run", job }, nil, "EDDY_TRACEBACK=1")
      assert.equal(1, code)
      local lines = run.lines(err)
      assert.equal("eddy: " .. job .. ":1: deep", lines[1])
      assert.equal("stack traceback:", lines[2])
      assert.truthy(err:find("in local 'f'", 1, true) or err:find("in function 'f'", 1, true))
    end)

    it("exits 1 when the script cannot be loaded", function()
      local _, err, code = eddy{ "run", dir .. "/missing.lua" }
      assert.equal(1, code)
      assert.equal("eddy: cannot open " .. dir .. "/missing.lua: No such file or directory\n", err)
      local bad = file("syntax.lua", "local x = = 1")
      _, err, code = eddy{ "run", bad }
      assert.equal(1, code)
      assert.matches("^eddy: " .. bad:gsub("%p", "%%%0") .. ":1: unexpected symbol near '='\n$", err)
    end)

    it("exits 130 when interrupted (SIGINT)", function()
      -- The script sends SIGINT to its own process (/proc/self is the reader):
      -- popen, unlike os.execute, does not ignore SIGINT while it waits.
      local job = file("int.lua", [[
        local pid = io.open("/proc/self/stat"):read("n")
        io.popen("kill -INT " .. pid):close()
        while true do end
      ]])
      local _, err, code = eddy{ "run", job }
      assert.equal(130, code)
      assert.equal("eddy: interrupted\n", err)
    end)

    it("lets a script catch the interruption like any error", function()
      local job = file("catch.lua", [[
        local pid = io.open("/proc/self/stat"):read("n")
        local ok, e = pcall(function()
          io.popen("kill -INT " .. pid):close()
          while true do end
        end)
        print(ok, e)
      ]])
      local out, _, code = eddy{ "run", job }
      assert.equal("false\tinterrupted\n", out)
      assert.equal(0, code)  -- handled: the run succeeded
    end)

    describe("usage errors exit 2 with one line pointing at --help", function()
      local cases = {
        { { "run" }, "'eddy run' needs a job script" },
        { { "run", "--frobnicate", "x.lua" }, "unknown option '--frobnicate'" },
        { { "run", "-x", "x.lua" }, "unknown option '-x'" },
        { { "run", "-p", "0", "x.lua" }, "-p: expected an integer from 1 to 32768, got '0'" },
        { { "run", "-p", "-3", "x.lua" }, "-p: expected an integer from 1 to 32768, got '-3'" },
        { { "run", "-p", "two", "x.lua" }, "-p: expected an integer from 1 to 32768, got 'two'" },
        { { "run", "-p", "4x", "x.lua" }, "-p: expected an integer from 1 to 32768, got '4x'" },
        { { "run", "-p" }, "option '-p' needs a value" },
        { { "run", "-D", "state.backend", "x.lua" }, "-D: expected key=value, got 'state.backend'" },
        { { "run", "-D=x", "x.lua" }, "-D: expected key=value, got '=x'" },
        { { "run", "-s" }, "option '-s' needs a path" },
        { { "bogus" }, "unknown command 'bogus'" },
        { { "job.lua" }, "unknown command 'job.lua' (to run a script: eddy run job.lua)" },
        { { "--bogus" }, "unknown option '--bogus'" },
        { { "repl", "-x" }, "unknown option '-x' for 'eddy repl'" },
      }
      for _, case in ipairs(cases) do
        it(table.concat(case[1], " "), function()
          local out, err, code = eddy(case[1])
          assert.equal(2, code)
          assert.equal("", out)
          assert.equal(1, #run.lines(err))
          assert.truthy(err:find(case[2], 1, true), err)
          assert.truthy(err:find("eddy --help", 1, true), err)
          assert.matches("^eddy: ", err)
        end)
      end
    end)

    it("checks the options before running anything", function()
      local job = file("side.lua", 'io.open(arg[1], "w"):close()')
      local _, _, code = eddy{ "run", "-p", "0", job, dir .. "/touched" }
      assert.equal(2, code)
      assert.is_nil(io.open(dir .. "/touched"))
    end)
  end)

  describe("run options reach eddy._cli_defaults", function()
    local function opts_for(args)
      local root = dir .. "/root"
      os.execute("mkdir -p " .. quote(root .. "/lua/eddy"))
      run.write(root .. "/lua/eddy/init.lua", FAKE_INIT)
      local job = file("show.lua", SHOW_OPTS)
      local argv = { "run" }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      argv[#argv + 1] = job
      local out, err, code = eddy(argv, nil, "EDDY_ROOT=" .. quote(root))
      assert.equal("", err)
      assert.equal(0, code)
      return (out:gsub("\n$", ""))
    end

    it("passes an empty flink table when no option is given", function()
      assert.equal("{flink={}}", opts_for{})
    end)

    it("passes every option", function()
      assert.equal('{allow_non_restored_state=true,flink={a.b="c=d",x="1"},'
                   .. 'parallelism=4,restore="/sp/1",resume=true,trace=true}',
                   opts_for{ "-p", "4", "-D", "a.b=c=d", "-Dx=1", "-s", "/sp/1",
                             "--allow-non-restored-state", "--resume", "--trace" })
    end)

    it("runs a detached script in the background, telling it where to report its job id", function()
      local root = dir .. "/root"
      os.execute("mkdir -p " .. quote(root .. "/lua/eddy") .. " " .. quote(dir .. "/xdg"))
      run.write(root .. "/lua/eddy/init.lua", FAKE_INIT)
      local job = file("show.lua", SHOW_OPTS)
      for _, flag in ipairs{ "-d", "--detached" } do
        -- the fake module starts no job: no id comes, and the log says why
        local out, err, code = eddy({ "run", flag, "-p2", job }, nil,
          "EDDY_ROOT=" .. quote(root) .. " XDG_RUNTIME_DIR=" .. quote(dir .. "/xdg"))
        assert.equal(1, code)
        assert.equal("", out)
        local log = err:match("^eddy: .*show%.lua ended without running a job %(log: (.-)%)\n$")
        assert.truthy(log, err)
        assert.matches('^{detached={fd=%d+,log="' .. dir:gsub("%p", "%%%0") .. '/xdg/eddy/run%-%d+%.log"},'
                       .. 'flink={},parallelism=2}\n$', run.read(log))
        os.remove(log)
      end
    end)

    it("accepts the long and glued spellings", function()
      assert.equal('{flink={},parallelism=12,restore="/sp"}',
                   opts_for{ "-p12", "--from-savepoint=/sp" })
      assert.equal('{flink={},parallelism=3,restore="/x"}',
                   opts_for{ "--parallelism", "3", "--from-savepoint", "/x" })
    end)

    it("lets the last -D of a key win, values as strings", function()
      assert.equal('{flink={k="2"}}', opts_for{ "-D", "k=1", "-D", "k=2" })
    end)

    it("gives --resume a folder when one follows", function()
      assert.equal('{flink={},resume="' .. dir .. '"}', opts_for{ "--resume", dir })
      assert.equal('{flink={},resume="/chk"}', opts_for{ "--resume=/chk" })
      assert.equal("{flink={},resume=true}", opts_for{ "--resume" })
    end)

    it("stops options at --", function()
      local root = dir .. "/root"
      os.execute("mkdir -p " .. quote(root .. "/lua/eddy"))
      run.write(root .. "/lua/eddy/init.lua", FAKE_INIT)
      local job = file("-dash.lua", 'print(arg[0])')
      local out, _, code = run.sh("cd " .. quote(dir) .. " && EDDY_ROOT=" .. quote(root) .. " "
                                  .. quote(run.exe) .. " run -- -dash.lua", "")
      assert.equal(0, code)
      assert.equal("-dash.lua\n", out)
      assert.truthy(job)
    end)

    it("finds the module at $EDDY_ROOT, as eddy --version shows", function()
      local root = dir .. "/root"
      os.execute("mkdir -p " .. quote(root .. "/lua/eddy"))
      run.write(root .. "/lua/eddy/init.lua", FAKE_INIT)
      local out, _, code = eddy({ "--version" }, nil, "EDDY_ROOT=" .. quote(root))
      assert.equal(0, code)
      assert.equal("eddy 9.9.9-fake\n", out)
    end)
  end)

  describe("other commands", function()
    it("prints the version", function()
      local out, _, code = eddy{ "--version" }
      assert.equal(0, code)
      assert.matches("^eddy %d+%.%d+%.%d+", out)
    end)

    it("prints the usage with -h, --help and run --help", function()
      for _, args in ipairs{ { "-h" }, { "--help" }, { "run", "--help" }, { "repl", "--help" } } do
        local out, err, code = eddy(args)
        assert.equal(0, code)
        assert.equal("", err)
        assert.truthy(out:find("eddy run [opts] job.lua [args]", 1, true))
        assert.truthy(out:find("--from-savepoint", 1, true))
        assert.truthy(out:find("eddy checkpoints [--verify] DIR", 1, true))
      end
    end)

    it("has the job-control commands, which name an unknown job in one line with status 1",
       function()
      local env = "XDG_RUNTIME_DIR=" .. quote(dir)
      for _, cmd in ipairs{ "info", "savepoint", "stop", "cancel" } do
        local out, err, code = eddy({ cmd, "nosuchjob" }, nil, env)
        assert.equal(1, code)
        assert.equal("", out)
        assert.equal(("eddy: %s: no %sjob \"nosuchjob\" (eddy list%s shows them)\n"):format(cmd,
          cmd == "info" and "" or "running ", cmd == "info" and " -a" or ""), err)
      end
      local out, err, code = eddy({ "list" }, nil, env)
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("no running jobs\n", out)
    end)
  end)

  describe("REPL over a pipe", function()
    local function repl(input, args)
      return eddy(args or {}, input)
    end

    it("prints expression results with eddy.inspect, one per line, and no prompt", function()
      local out, err, code = repl('1 + 1\n"text"\n{b = 2, a = {1, 2}}\nreturn 1, "two", nil\n')
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal('2\n"text"\n{a = {1, 2}, b = 2}\n1\n"two"\nnil\n', out)
    end)

    it("prints nothing for statements", function()
      local out, err, code = repl('x = 41\nlocal y = 1\nprint("side effect")\nx + 1\n\n   \n')
      assert.equal(0, code)
      assert.equal("", err)
      assert.equal("side effect\n42\n", out)
    end)

    it("runs `eddy repl` like `eddy`", function()
      local out, _, code = repl("2 * 21\n", { "repl" })
      assert.equal(0, code)
      assert.equal("42\n", out)
    end)

    it("continues incomplete chunks on the next lines", function()
      local out, err = repl("for i = 1, 3 do\n  print(i)\nend\n{\n  a = 1,\n}\nf = function()\nreturn 7 end\nf()\n")
      assert.equal("", err)
      assert.equal("1\n2\n3\n{a = 1}\n7\n", out)
    end)

    it("prints errors as `error: <message>` and carries on", function()
      local out, err, code = repl('error("first")\n1 + nil\nfoo bar\n"still here"\n')
      assert.equal(0, code)
      assert.equal('"still here"\n', out)
      local lines = run.lines(err)
      assert.equal("error: stdin:1: first", lines[1])
      assert.matches("^error: stdin:1: attempt to perform arithmetic on a nil value", lines[2])
      assert.equal("error: stdin:1: syntax error near 'bar'", lines[3])
      assert.equal(3, #lines)
    end)

    it("reports a chunk the input ends in", function()
      local out, err, code = repl("for i = 1, 2 do\n")
      assert.equal(0, code)
      assert.equal("", out)
      assert.equal("error: stdin:1: 'end' expected near <eof>\n", err)
    end)

    it("keeps globals across lines and has the module as eddy", function()
      local out = repl('t = {}\nt.x = 1\nt\neddy == require("eddy")\ntype(eddy.inspect)\n')
      assert.equal('{x = 1}\ntrue\n"function"\n', out)
    end)

    it("loads a file with .load and prints what it returns", function()
      local lib = file("lib.lua", 'greeting = "hi"\nreturn 1, 2')
      local out, err = repl(".load " .. lib .. "  \ngreeting\n.load " .. dir .. "/nope.lua\n")
      assert.equal("1\n2\n\"hi\"\n", out)
      assert.equal("error: cannot open " .. dir .. "/nope.lua: No such file or directory\n", err)
    end)

    it("stops at .quit", function()
      local out, _, code = repl('1\n.quit\nprint("not reached")\n')
      assert.equal(0, code)
      assert.equal("1\n", out)
    end)

    it("lists commands and functions with .help", function()
      local out = repl(".help\n")
      for _, word in ipairs{ ".help", ".load FILE", ".quit", "eddy.harness", "eddy.job", "eddy.inspect" } do
        assert.truthy(out:find(word, 1, true), word)
      end
    end)

    it("rejects unknown dot-commands but reads .5 as a number", function()
      local out, err = repl(".frob x\n.5 + 1\n")
      assert.equal("1.5\n", out)
      assert.equal("error: unknown command '.frob' (.help lists them)\n", err)
    end)

    it("runs the script of `eddy repl script.lua` first, in the same state", function()
      local setup = file("setup.lua", 'answer = 42\nprint("setup", ...)')
      local out, _, code = repl("answer\n", { "repl", setup, "x" })
      assert.equal(0, code)
      assert.equal("setup\tx\n42\n", out)
    end)

    it("carries on after an error in that script, but not after a missing one", function()
      local bad = file("bad.lua", 'error("oops")')
      local out, err, code = repl("1\n", { "repl", bad })
      assert.equal(0, code)
      assert.equal("1\n", out)
      assert.equal("error: " .. bad .. ":1: oops\n", err)
      out, err, code = repl("1\n", { "repl", dir .. "/missing.lua" })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^eddy: cannot open .*missing.lua", err)
    end)

    it("interrupts running code on SIGINT and goes on with the next line", function()
      local out, err, code = repl([[
pid = io.open("/proc/self/stat"):read("n")
io.popen("kill -INT " .. pid):close() while true do end
"after"
]])
      assert.equal(0, code)
      assert.equal('"after"\n', out)
      assert.equal("error: interrupted\n", err)
    end)

    it("writes no history without a terminal", function()
      local hist = dir .. "/history"
      eddy({}, "1\n", "EDDY_HISTORY=" .. quote(hist))
      assert.is_nil(io.open(hist))
    end)
  end)

  describe("REPL on a terminal (script(1))", function()
    -- Runs eddy on a pseudo-terminal; feed is a shell command writing the
    -- keystrokes. Returns what the terminal showed, without bracketed-paste
    -- control sequences and carriage returns.
    local function on_tty(feed, env)
      -- script(1) is not instrumented: under `make SANITIZE=1` the sanitizer
      -- runtime preloaded for lua5.4 would make it fail at exit.
      -- script(1) runs the command with $SHELL -c; exec makes eddy the only
      -- process on the terminal, since a shell that stays (dash does when
      -- the command sets variables) would die of the Ctrl-C itself.
      local cmd = ("(%s) | env -u LD_PRELOAD script -qec %s /dev/null"):format(feed,
        quote("exec env " .. (env or "") .. " " .. quote(run.exe)))
      local out, _, code = run.sh(cmd)
      return (out:gsub("\27%[%?2004[hl]", ""):gsub("\r", "")), code
    end

    local function keys(s) return "printf '%s' " .. quote(s) end

    it("prompts, continues with >>, and appends chunks to $EDDY_HISTORY", function()
      if not has_script then pending("script(1) is not installed") return end
      local hist = dir .. "/history"
      run.write(hist, "old entry\n")
      local out, code = on_tty(keys("1 + 1\n1 + 1\nx = 2\nfor i = 1, 2 do\nprint(i)\nend\nx = 2\n\n"),
                               "EDDY_HISTORY=" .. quote(hist))
      assert.equal(0, code)
      assert.truthy(out:find("eddy> 1 + 1\n2\n", 1, true), out)
      assert.truthy(out:find(">> end\n1\n2\n", 1, true), out)
      -- a multi-line chunk is one entry; an immediate repeat is not added
      assert.equal("old entry\n1 + 1\nx = 2\nfor i = 1, 2 do print(i) end\nx = 2\n", run.read(hist))
    end)

    it("completes globals, fields and methods with Tab", function()
      if not has_script then pending("script(1) is not installed") return end
      local out, code = on_tty(keys(table.concat({
        "f = eddy.insp\t",
        "f == eddy.inspect",
        "stri\t.up\t('a')",
        "h = setmetatable({}, {__index = {push = function() return 'pushed' end, pull = 1}})",
        "h:pu\t()",
        "",
      }, "\n")), "EDDY_HISTORY=")
      assert.equal(0, code)
      assert.truthy(out:find("eddy> f = eddy.inspect\n", 1, true), out)
      assert.truthy(out:find("eddy> f == eddy.inspect\ntrue\n", 1, true), out)
      assert.truthy(out:find("eddy> string.upper('a')\n\"A\"\n", 1, true), out)
      -- pull is not a function: push is the only method
      assert.truthy(out:find("eddy> h:push()\n\"pushed\"\n", 1, true), out)
    end)

    it("keeps at most 1000 entries", function()
      if not has_script then pending("script(1) is not installed") return end
      local hist = dir .. "/history"
      local old = {}
      for i = 1, 1200 do old[i] = "old" .. i end
      run.write(hist, table.concat(old, "\n") .. "\n")
      local _, code = on_tty(keys("new = 1\n"), "EDDY_HISTORY=" .. quote(hist))
      assert.equal(0, code)
      local lines = run.lines(run.read(hist))
      assert.equal(1000, #lines)
      assert.equal("new = 1", lines[1000])
      assert.equal("old202", lines[1])
    end)

    it("Ctrl-C stops running code and clears the line at the prompt", function()
      if not has_script then pending("script(1) is not installed") return end
      local mark, back = dir .. "/running", dir .. "/back"
      local function wait_for(file)
        return "for i in $(seq 400); do [ -e " .. quote(file) .. " ] && break; sleep 0.05; done"
      end
      -- Ctrl-C is sent once the loop runs (the marker exists), then once at
      -- the prompt with text typed, which must be dropped. The second one
      -- waits until a command typed after the first has run: sent while the
      -- interrupted chunk is still unwinding it would be a second Ctrl-C
      -- during execution, which kills, as in lua.c.
      local feed = table.concat({
        keys(("io.open(%q, 'w'):close() while true do end\n"):format(mark)),
        wait_for(mark), "sleep 0.3",
        keys("\3"),
        keys(("io.open(%q, 'w'):close()\n"):format(back)),
        wait_for(back), "sleep 0.3",
        keys("dropped"), "sleep 0.3", keys("\3"), "sleep 0.3",
        keys('"after"\n'), "sleep 0.3",
      }, "; ")
      local out, code = on_tty(feed, "EDDY_HISTORY=")
      assert.equal(0, code, out)
      assert.truthy(out:find("error: interrupted\n", 1, true), out)
      assert.truthy(out:find('eddy> "after"\n"after"\n', 1, true), out)
      assert.is_nil(out:find("dropped\n", 1, true), out)
      assert.is_nil(out:find("error: stdin", 1, true), out)
    end)
  end)
end)
