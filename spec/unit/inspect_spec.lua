-- eddy.inspect: Lua-literal output that can be pasted back, deterministic
-- layout, and values it must never choke on.
local inspect = require "eddy.inspect"

-- What a printed value reads back as.
local function eval(s)
  return assert(load("return " .. s))()
end

describe("eddy.inspect", function()
  describe("scalars", function()
    it("prints nil and booleans", function()
      assert.equal("nil", inspect(nil))
      assert.equal("true", inspect(true))
      assert.equal("false", inspect(false))
    end)

    it("prints integers as they are", function()
      assert.equal("42", inspect(42))
      assert.equal("-7", inspect(-7))
      assert.equal("0", inspect(0))
      assert.equal("9223372036854775807", inspect(math.maxinteger))
    end)

    it("prints math.mininteger so that it reads back as an integer", function()
      local s = inspect(math.mininteger)
      assert.equal("math.mininteger", s)
      assert.equal(math.mininteger, eval(s))
      assert.equal("integer", math.type(eval(s)))
    end)

    it("prints floats as tostring does", function()
      assert.equal("12.5", inspect(12.5))
      assert.equal("-0.25", inspect(-0.25))
      assert.equal("1e+100", inspect(1e100))
      assert.equal("3.14", inspect(3.14))
    end)

    it("keeps .0 on integral floats", function()
      assert.equal("1.0", inspect(1.0))
      assert.equal("-3.0", inspect(-3.0))
      assert.equal("-0.0", inspect(-0.0))
      assert.equal("9007199254740992.0", inspect(2.0 ^ 53))
      assert.equal("float", math.type(eval(inspect(2.0 ^ 53))))
    end)

    it("uses the digits a float needs to read back the same", function()
      local v = 0.1 + 0.2
      assert.equal("0.30000000000000004", inspect(v))
      assert.equal(v, eval(inspect(v)))
      for _, x in ipairs{ 1 / 3, 2 / 3, 1e-300, 123456.789, math.pi, 2 ^ 60 + 0.0 } do
        assert.equal(x, eval(inspect(x)))
      end
    end)

    it("prints infinities and NaN as expressions", function()
      assert.equal("1/0", inspect(1 / 0))
      assert.equal("-1/0", inspect(-1 / 0))
      assert.equal("0/0", inspect(0 / 0))
      assert.equal(math.huge, eval(inspect(math.huge)))
    end)

    it("quotes strings", function()
      assert.equal('"c1"', inspect("c1"))
      assert.equal('""', inspect(""))
    end)

    it("escapes quotes, backslashes and line breaks readably", function()
      assert.equal([["a\"b\\c"]], inspect('a"b\\c'))
      assert.equal([["one\ntwo\tthree\r"]], inspect("one\ntwo\tthree\r"))
    end)

    it("writes other control bytes as \\xNN", function()
      assert.equal([["\x00\x01\x1B\x7F"]], inspect("\0\1\27\127"))
    end)

    it("keeps valid UTF-8 and escapes bytes that are not", function()
      assert.equal('"héllo wörld €𝄞"', inspect("héllo wörld €𝄞"))
      assert.equal([["\xFF\xFE"]], inspect("\255\254"))
      assert.equal([["a\xC3"]], inspect("a\xC3"))              -- cut short
      assert.equal([["\xC0\xAF"]], inspect("\xC0\xAF"))        -- overlong
      assert.equal([["\xED\xA0\x80"]], inspect("\xED\xA0\x80")) -- surrogate
      assert.equal([["\xF4\x90\x80\x80"]], inspect("\xF4\x90\x80\x80")) -- past U+10FFFF
    end)

    it("prints strings that read back as the same bytes", function()
      local all = {}
      for b = 0, 255 do all[#all + 1] = string.char(b) end
      local s = table.concat(all) .. "é€"
      assert.equal(s, eval(inspect(s)))
    end)

    it("prints functions, threads and userdata with tostring", function()
      assert.equal(tostring(print), inspect(print))
      local co = coroutine.create(print)
      assert.equal(tostring(co), inspect(co))
      assert.equal(tostring(io.stdout), inspect(io.stdout))  -- its __tostring
    end)

    it("survives a __tostring that fails", function()
      local t = setmetatable({}, { __tostring = function() error("no") end })
      assert.equal("table: ?", inspect(t))
    end)
  end)

  describe("tables", function()
    it("prints the example of the contract", function()
      assert.equal('{amount = 12.5, customer = "c1", items = {1, 2, 3}}',
        inspect{ customer = "c1", amount = 12.5, items = { 1, 2, 3 } })
    end)

    it("prints an empty table as {}", function()
      assert.equal("{}", inspect{})
    end)

    it("prints the sequence part positionally, then the other keys", function()
      assert.equal('{"a", "b", n = 2}', inspect{ "a", "b", n = 2 })
    end)

    it("prints keys after a hole with their index", function()
      assert.equal("{1, [3] = 3}", inspect{ 1, nil, 3 })
      assert.equal("{[2] = 2}", inspect{ nil, 2 })
    end)

    it("sorts integers, then strings, then the rest", function()
      local t = { [10] = "i10", [-1] = "neg", [3] = "i3", b = 1, a = 2, B = 3,
                  [true] = "t", [false] = "f", [2.5] = "x", [0.5] = "y" }
      assert.equal('{[-1] = "neg", [3] = "i3", [10] = "i10", B = 3, a = 2, b = 1, '
                   .. '[0.5] = "y", [2.5] = "x", [false] = "f", [true] = "t"}',
                   inspect(t, { oneline = true }))
    end)

    it("quotes keys that are not names or are keywords", function()
      assert.equal('{["1x"] = 3, _ok = 5, ["a b"] = 1, ["end"] = 2, ["goto"] = 4}',
        inspect{ ["a b"] = 1, ["end"] = 2, ["1x"] = 3, ["goto"] = 4, _ok = 5 })
    end)

    it("is deterministic whatever order the keys were inserted in", function()
      local a, b = {}, {}
      for i = 1, 50 do a["k" .. i] = i end
      for i = 50, 1, -1 do b["k" .. i] = i end
      assert.equal(inspect(a), inspect(b))
    end)

    it("prints what reads back as an equal table", function()
      local t = { 1, 2, { x = "y", [5] = false }, name = "n", ["a-b"] = { 1.5, -0.0 },
                  [3.5] = true, deep = { deeper = { "z" } } }
      assert.same(t, eval(inspect(t)))
      assert.same(t, eval(inspect(t, { oneline = true })))
    end)

    it("prints false values", function()
      assert.equal("{false, x = false}", inspect{ false, x = false })
    end)

    it("prints table keys as tables", function()
      assert.equal('{[{1}] = "k"}', inspect{ [{ 1 }] = "k" })
    end)

    it("marks a table seen again on the current path", function()
      local t = { name = "t" }
      t.self = t
      t.list = { t }
      assert.equal('{list = {<cycle>}, name = "t", self = <cycle>}', inspect(t))
    end)

    it("prints a table shared by siblings in full each time", function()
      local shared = { 1 }
      assert.equal("{a = {1}, b = {1}}", inspect{ a = shared, b = shared })
    end)

    it("stops at opts.depth (default 12)", function()
      local t = { a = { b = { c = {} } }, d = { 1 } }
      assert.equal("{a = {...}, d = {...}}", inspect(t, { depth = 1 }))
      assert.equal("{a = {b = {...}}, d = {1}}", inspect(t, { depth = 2 }))
      assert.equal("{...}", inspect(t, { depth = 0 }))
      local deep = {}
      local cur = deep
      for _ = 1, 20 do cur.x = {}; cur = cur.x end
      cur.x = 1
      assert.equal(("{x = "):rep(12) .. "{...}" .. ("}"):rep(12), inspect(deep))
    end)

    it("still shows an empty table past the depth limit", function()
      assert.equal("{a = {}}", inspect({ a = {} }, { depth = 1 }))
    end)

    it("does not run __index, __pairs or __len", function()
      local t = setmetatable({ 1, x = 1 }, {
        __index = function() error("no __index") end,
        __pairs = function() error("no __pairs") end,
        __len = function() error("no __len") end,
      })
      assert.equal("{1, x = 1}", inspect(t))
    end)

    it("uses a table's __tostring", function()
      local t = setmetatable({ secret = 1 }, { __tostring = function() return "<Point 1,2>" end })
      assert.equal("{p = <Point 1,2>}", inspect{ p = t })
    end)
  end)

  describe("layout", function()
    it("keeps a value on one line when it fits opts.width", function()
      local t = { name = ("x"):rep(60) }
      local s = inspect(t)
      assert.equal(1, select(2, s:gsub("\n", "")) + 1)
      assert.is_true(#s <= 80)
    end)

    it("breaks a table that does not fit: one field per line, 2-space indent", function()
      local t = { alpha = ("a"):rep(30), beta = ("b"):rep(30), gamma = { 1, 2, 3 } }
      assert.equal(table.concat({
        "{",
        '  alpha = "' .. ("a"):rep(30) .. '",',
        '  beta = "' .. ("b"):rep(30) .. '",',
        "  gamma = {1, 2, 3}",
        "}",
      }, "\n"), inspect(t))
    end)

    it("nests broken tables with deeper indentation", function()
      local t = { outer = { inner = { ("x"):rep(20), ("y"):rep(20) }, n = 1 } }
      assert.equal(table.concat({
        "{",
        "  outer = {",
        "    inner = {",
        '      "' .. ("x"):rep(20) .. '",',
        '      "' .. ("y"):rep(20) .. '"',
        "    },",
        "    n = 1",
        "  }",
        "}",
      }, "\n"), inspect(t, { width = 30 }))
    end)

    it("counts UTF-8 characters, not bytes, against the width", function()
      local s = ("é"):rep(20)  -- 20 columns, 40 bytes
      assert.equal('{"' .. s .. '"}', inspect({ s }, { width = 24 }))
    end)

    it("never breaks with opts.oneline", function()
      local big = {}
      for i = 1, 100 do big[i] = { id = i } end
      local s = inspect(big, { oneline = true })
      assert.is_nil(s:find("\n"))
      assert.same(big, eval(s))
    end)

    it("keeps every line within the width when the values allow it", function()
      local rows = {}
      for i = 1, 20 do rows[i] = { id = i, name = "customer-" .. i, tags = { "a", "b" } } end
      for line in inspect({ rows = rows }, { width = 50 }):gmatch("[^\n]+") do
        assert.is_true(#line <= 50, line)
      end
    end)

    it("rejects options of the wrong type", function()
      assert.has_error(function() inspect(1, "wide") end,
                       "eddy.inspect: opts: expected a table, got string")
      assert.has_error(function() inspect(1, { width = "80" }) end)
    end)
  end)
end)
